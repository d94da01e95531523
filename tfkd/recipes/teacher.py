"""A study's teacher: trained once per teacher config, saved in the study folder, then reused."""

import dataclasses
import hashlib
import os

import keras

import tfkd
from tfkd.checks import check_classifier
from tfkd.distiller import build_optimizer
from tfkd.recipes import distributed, folder, inputs
from tfkd.recipes.config import ConfigError
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
    (restoring the best epoch), keyed by a hash of everything that shapes it. A pretrained
    teacher (config.teacher_weights, or a hub:PRESET) is fine-tuned in two phases, see
    `_train`. With config.teacher_path, the saved teacher is used as it is.

    Args:
        study: the `folder.StudyFolder`.
        config: the study's `StudyConfig`.
        data: an `inputs.Data` (its test split scores the teacher).
        name, size: the teacher model and its input side; default config.teacher and
            config.teacher_size.
        seed: the seed the teacher trains with.
    """
    if config.teacher_path:  # recipes with several teachers refuse it (arch_pairing)
        return _saved_teacher(study, config, data)
    name, size = name or config.teacher, size or config.teacher_size
    key = {"teacher": name, "size": size, "epochs": config.teacher_epochs,
           "patience": config.teacher_patience, "dataset": config.dataset,
           "data_size": config.data_size, "limit": config.teacher_limit or config.limit,
           "batch_size": config.batch_size, "learning_rate": config.learning_rate, "seed": seed}
    if _pretrained(config, name):  # new keys only here: older teacher folders keep their hash
        key.update(weights=config.teacher_weights or "preset",
                   warmup_epochs=config.teacher_warmup_epochs,
                   finetune_lr_scale=config.teacher_finetune_lr_scale)
    where = study.teacher_dir(key)
    path = os.path.join(where, folder.TEACHER_MODEL)
    info_path = os.path.join(where, folder.TEACHER_INFO)
    info = folder.read_json(info_path)
    if info and os.path.exists(path):
        print(f"teacher {name}@{size}: reusing {path} (test accuracy {info['accuracy']:.4f})",
              flush=True)
        with distributed.strategy(config.strategy).scope():  # variables on every replica
            model = tfkd.models.load_model(path)
    else:
        print(f"Training teacher {name}@{size} ...", flush=True)
        distributed.note_shard_teacher(config)
        model, info = _train(config, data, name, size, seed, where)
        info["config"] = key
        folder.save_model(model, path)
        folder.write_json(info_path, info)
        print(f"teacher test accuracy {info['accuracy']:.4f} after {info['epochs_run']} "
              "epochs", flush=True)
    family, kind = tfkd.models.family_and_kind(name)
    return Teacher(model=model, path=path, name=name, family=family, kind=kind,
                   size=size, accuracy=info["accuracy"])


def _saved_teacher(study, config, data):
    """The teacher in config.teacher_path, scored once on this study's test split.

    Its folder in the study (keyed by the file's hash) keeps that score and the teacher caches;
    the caches check the teacher's weights themselves.
    """
    source = os.path.abspath(config.teacher_path)
    where = study.teacher_dir({"teacher_path": source, "sha256": _file_hash(source),
                               "dataset": config.dataset, "data_size": config.data_size,
                               "test_limit": config.test_limit})
    info_path = os.path.join(where, folder.TEACHER_INFO)
    info = folder.read_json(info_path)
    with distributed.strategy(config.strategy).scope():
        model = tfkd.models.load_model(source)
        size, classes = check_classifier(model, "teacher")
        if classes != data.num_classes:
            raise ConfigError(lambda n: (
                f"{n('teacher_path')}={config.teacher_path} outputs {classes} classes but "
                f"{config.dataset} has {data.num_classes}; train the teacher on this dataset, "
                f"e.g. python -m tfkd.recipes.train_teacher --dataset={config.dataset}"))
        if not info:
            model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    size = size[0]
    if not info:
        accuracy = model.evaluate(inputs.resized(data.test, size), verbose=0,
                                  return_dict=True)["accuracy"]
        info = {"accuracy": float(accuracy), "teacher_path": source}
        folder.write_json(info_path, info)
    family, kind = tfkd.models.family_and_kind(model)
    print(f"teacher {model.name}@{size} from {source}: test accuracy {info['accuracy']:.4f}",
          flush=True)
    return Teacher(model=model, path=os.path.join(where, folder.TEACHER_MODEL), name=model.name,
                   family=family, kind=kind, size=size, accuracy=info["accuracy"])


def _file_hash(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pretrained(config, name):
    return bool(config.teacher_weights) or tfkd.models.hub.is_hub(name)


def _train(config, data, name, size, seed, where):
    """Trains the teacher; a pretrained one in two phases.

    Phase 1 (config.teacher_warmup_epochs): only the new head learns, the backbone frozen,
    so the random head's first large gradients do not wreck the pretrained features. Phase 2:
    the whole model at learning_rate * teacher_finetune_lr_scale, with BatchNormalization
    still in inference mode (as Keras's transfer-learning guide does: its ImageNet statistics
    stay, and small batches cannot disturb them), early stopping on held-out accuracy.
    """
    keras.utils.set_random_seed(seed)
    pretrained = _pretrained(config, name)
    warmup = min(config.teacher_warmup_epochs, config.teacher_epochs) if pretrained else 0
    epochs = config.teacher_epochs - warmup
    with distributed.strategy(config.strategy).scope():
        teacher = tfkd.create_model(name, image_size=size, num_classes=data.num_classes,
                                    weights=config.teacher_weights or None)
        train, val, steps = inputs.teacher_splits(config, size, seed)
    val_accuracy = []
    if warmup:
        print(f"  warm-up: {warmup} epoch(s) training the head alone", flush=True)
        tfkd.models.freeze_backbone(teacher)
        history = _fit(config, teacher, train, val, warmup, config.learning_rate,
                       warmup * steps, callbacks=[])
        val_accuracy += history.history["val_accuracy"]
        tfkd.models.freeze_backbone(teacher, frozen=False)
        tfkd.models.freeze_batch_norm(teacher)
    if epochs:
        rate = config.learning_rate * (config.teacher_finetune_lr_scale if pretrained else 1.0)
        stop = keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                             patience=config.teacher_patience,
                                             restore_best_weights=True)
        # Shards sharing a folder may train the same teacher at once: one backup each.
        shard = f"-shard{config.shard_index}" if config.num_shards > 1 else ""
        backup = AtomicBackupAndRestore(os.path.join(where, "backup" + shard))
        history = _fit(config, teacher, train, val, epochs, rate, epochs * steps,
                       callbacks=[stop, backup])
        val_accuracy += history.history["val_accuracy"]
    accuracy = teacher.evaluate(inputs.resized(data.test, size), verbose=0,
                                return_dict=True)["accuracy"]
    info = {"accuracy": float(accuracy), "epochs_run": len(val_accuracy),
            "val_accuracy": [float(v) for v in val_accuracy]}
    if warmup:
        info["warmup_epochs"] = warmup
    return teacher, info


def _fit(config, teacher, train, val, epochs, learning_rate, steps, callbacks):
    with distributed.strategy(config.strategy).scope():
        teacher.compile(optimizer=adam(learning_rate, steps),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
        build_optimizer(teacher)
    return teacher.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks,
                       verbose=config.verbose, shuffle=False)

