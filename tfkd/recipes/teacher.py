"""A study's teacher: trained once per teacher config, saved in the study folder, then reused."""

import dataclasses
import os

import keras

import tfkd
from tfkd.distiller import build_optimizer
from tfkd.recipes import distributed, folder, inputs
from tfkd.recipes.training import AtomicBackupAndRestore, adam


@dataclasses.dataclass
class Teacher:
    """A trained teacher and what the report says about it."""

    model: object
    path: str
    name: str
    family: str
    kind: str
    size: int
    accuracy: float
    caches: dict = dataclasses.field(default_factory=dict)  # split -> TeacherCache


def get_teacher(study, config, data, name=None, size=None, seed=0):
    """The teacher of this config: loaded if the study trained it before, else trained now.

    Trained on the labels with early stopping on a held-out tenth of the training batches
    (restoring the best epoch), keyed by a hash of everything that shapes it.

    Args:
        study: the `folder.StudyFolder`.
        config: the study's `StudyConfig`.
        data: an `inputs.Data` (its test split scores the teacher).
        name, size: the teacher model and its input side; default config.teacher and
            config.teacher_size.
        seed: the seed the teacher trains with.
    """
    name, size = name or config.teacher, size or config.teacher_size
    key = {"teacher": name, "size": size, "epochs": config.teacher_epochs,
           "patience": config.teacher_patience, "dataset": config.dataset,
           "data_size": config.data_size, "limit": config.teacher_limit or config.limit,
           "batch_size": config.batch_size, "learning_rate": config.learning_rate, "seed": seed}
    where = study.teacher_dir(key)
    path = os.path.join(where, folder.TEACHER_MODEL)
    info_path = os.path.join(where, folder.TEACHER_INFO)
    info = folder.read_json(info_path)
    if info and os.path.exists(path):
        print(f"teacher {name}@{size}: reusing {path} (test accuracy {info['accuracy']:.4f})",
              flush=True)
        with distributed.strategy(config.strategy).scope():  # variables on every replica
            model = keras.saving.load_model(path, safe_mode=True)
    else:
        print(f"Training teacher {name}@{size} ...", flush=True)
        distributed.note_shard_teacher(config)
        model, info = _train(config, data, name, size, seed, where)
        info["config"] = key
        folder.save_model(model, path)
        folder.write_json(info_path, info)
        print(f"teacher test accuracy {info['accuracy']:.4f} after {info['epochs_run']} "
              "epochs", flush=True)
    module = tfkd.models._family_of(name)
    return Teacher(model=model, path=path, name=name, family=module.FAMILY, kind=module.KIND,
                   size=size, accuracy=info["accuracy"])


def _train(config, data, name, size, seed, where):
    keras.utils.set_random_seed(seed)
    with distributed.strategy(config.strategy).scope():
        teacher = tfkd.create_model(name, image_size=size, num_classes=data.num_classes)
        train, val, steps = inputs.teacher_splits(config, size, seed)
        teacher.compile(optimizer=adam(config.learning_rate, config.teacher_epochs * steps),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
        build_optimizer(teacher)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                         patience=config.teacher_patience,
                                         restore_best_weights=True)
    # Shards sharing a folder may train the same teacher at once: one backup each.
    shard = f"-shard{config.shard_index}" if config.num_shards > 1 else ""
    backup = AtomicBackupAndRestore(os.path.join(where, "backup" + shard))
    history = teacher.fit(train, validation_data=val, epochs=config.teacher_epochs,
                          callbacks=[stop, backup], verbose=config.verbose, shuffle=False)
    accuracy = teacher.evaluate(inputs.resized(data.test, size), verbose=0,
                                return_dict=True)["accuracy"]
    return teacher, {"accuracy": float(accuracy), "epochs_run": len(history.epoch),
                     "val_accuracy": [float(v) for v in history.history["val_accuracy"]]}
