"""Pieces shared by the recipes: the flags every recipe takes, data, the teacher, the export."""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import app, flags
from absl import logging as absl_logging

import tfkd
from tfkd.distiller import build_optimizer, resize_images
from tfkd.recipes import distributed, study as study_lib

FLAGS = flags.FLAGS


def define_common_flags(**defaults):
    """Flags shared by every recipe; `defaults` overrides a flag's default for this recipe.

    Call once, at import of the recipe module.
    """
    d = {"dataset": "fashion_mnist", "data_size": 28, "teacher": "convnet_m",
         "teacher_size": 28, "teacher_epochs": 3, "teacher_patience": 2, "epochs": 3,
         "batch_size": 128, "learning_rate": 2e-3, "limit": 5000, "teacher_limit": 30000,
         "test_limit": 0,
         "seeds": ["0"], "temperature": 4.0, "student_loss_weight": 0.5, "output_dir": "runs",
         "name": "default", "targets": ["local"], "bench_threads": ["1", "2"],
         "quantization": "int8", "verbose": 2, **defaults}
    flags.DEFINE_string("dataset", d["dataset"],
                        "Dataset: fashion_mnist, image_folder:PATH or tfds:NAME.")
    flags.DEFINE_integer("data_size", d["data_size"], "Side the dataset is loaded at; each "
                         "model gets the batches resized to its own input side.")
    flags.DEFINE_string("teacher", d["teacher"], "Teacher model (tfkd.list_models()).")
    flags.DEFINE_integer("teacher_size", d["teacher_size"], "Teacher input side.")
    flags.DEFINE_integer("teacher_epochs", d["teacher_epochs"], "Most epochs to train the "
                         "teacher for (early stopping may end sooner).")
    flags.DEFINE_integer("teacher_patience", d["teacher_patience"], "Early stopping: epochs "
                         "without a better held-out accuracy before the teacher stops.")
    flags.DEFINE_integer("epochs", d["epochs"], "Training epochs per student run.")
    flags.DEFINE_integer("batch_size", d["batch_size"], "Global batch size: with several "
                         "replicas (--strategy) each gets batch_size / replicas per step.")
    flags.DEFINE_float("learning_rate", d["learning_rate"], "Peak Adam learning rate (cosine "
                       "decay to zero over each run).")
    flags.DEFINE_integer("limit", d["limit"], "Training examples used (the first N of the "
                         "split); 0: all.")
    flags.DEFINE_integer("teacher_limit", d["teacher_limit"], "Training examples the teacher "
                         "learns from (the first N); 0: the same as --limit. A teacher that saw "
                         "more data than the students is the usual KD setting.")
    flags.DEFINE_integer("test_limit", d["test_limit"], "Test examples used; 0: all.")
    flags.DEFINE_list("seeds", d["seeds"], "Seeds; every run is repeated once per seed and the "
                      "report gives mean and std over them.")
    flags.DEFINE_float("temperature", d["temperature"], "KD temperature.")
    flags.DEFINE_float("student_loss_weight", d["student_loss_weight"],
                       "Weight of the hard-label loss in KD (the rest goes to distillation).")
    flags.DEFINE_string("output_dir", d["output_dir"], "Root folder: the study goes to "
                        "OUTPUT_DIR/<recipe>/<name>/.")
    flags.DEFINE_string("name", d["name"], "Study name. The same command with the same name "
                        "resumes it, skipping finished runs.")
    flags.DEFINE_list("targets", d["targets"], "Where to time each exported student: local, "
                      "adb, adb:SERIAL or ssh:user@host[:port]; empty: no latency.")
    flags.DEFINE_list("bench_threads", d["bench_threads"], "CPU thread counts for latency.")
    flags.DEFINE_enum("quantization", d["quantization"], [*tfkd.export.QUANTIZATIONS, "none"],
                      "TFLite export of each student, checked against the float model on the "
                      "test split; none: no export and no latency.")
    flags.DEFINE_float("max_quantization_drop", 1.0, "Accuracy points the export may lose "
                       "before it is flagged.")
    flags.DEFINE_enum("teacher_cache", "auto", ["auto", "off"], "auto: run each teacher once "
                      "over the train and test splits, store its logits (tfkd.TeacherCache, in "
                      "the teacher's folder) and distil every student from them; off: run the "
                      "teacher on every student step. auto falls back to off for splits too "
                      "large to hold in memory.")
    flags.DEFINE_integer("verbose", d["verbose"], "Keras progress bar per epoch: 0 quiet, 1 bar, "
                         "2 a line per epoch.")
    flags.DEFINE_enum("strategy", "default", list(tfkd.distribute.STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (every GPU of this "
                      "machine), multi_worker (machines listed in $TF_CONFIG) or tpu.")
    flags.DEFINE_integer("shard_index", 0, "This machine's share of the runs: 0 .. "
                         "--num_shards - 1. Shards write into the same run layout; "
                         "python -m tfkd.report merges their study folders.")
    flags.DEFINE_integer("num_shards", 1, "Machines the runs are split across (round-robin in "
                         "run order); 1: every run here.")


def parse_sizes(values, model, flag):
    """Image sides from a list flag, each checked against `model`'s minimum input size."""
    try:
        sizes = [int(v) for v in values]
    except ValueError:
        raise app.UsageError(f"{flag} must be comma-separated integers, got "
                             f"{','.join(values)!r}; e.g. {flag}=32,48,64") from None
    minimum = tfkd.models.min_image_size(model)
    too_small = [s for s in sizes if s < minimum]
    if not sizes or too_small:
        raise app.UsageError(f"{flag}={','.join(values)}: {model} needs sides of at least "
                             f"{minimum}; drop {too_small or 'nothing'} or pick another model.")
    return sizes


def parse_ints(values, flag, example, minimum=0):
    """A list flag as integers >= `minimum`, with a usage error that says what to pass."""
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < minimum:
        raise app.UsageError(f"{flag} must be comma-separated integers >= {minimum}, got "
                             f"{','.join(values)!r}; e.g. {flag}={example}")
    return numbers


def check_models(*names):
    """A usage error naming the zoo when a model name is unknown."""
    known = tfkd.list_models()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise app.UsageError(f"unknown model(s) {unknown}; choose from {known}")


def check_counts(cfg, *lists):
    """Usage errors for counts below 1 and for empty model lists (given as (flag, values))."""
    for flag in ("epochs", "teacher_epochs", "batch_size"):
        if getattr(cfg, flag) < 1:
            raise app.UsageError(f"--{flag}={getattr(cfg, flag)}; pass at least 1")
    for flag, values in lists:
        if not values:
            raise app.UsageError(f"{flag} is empty; name at least one model, e.g. "
                                 f"{flag}=mobilenetv3_small")


def start(recipe, cfg):
    """The checks and set-up every recipe does first; returns (study, seeds)."""
    quiet_tensorflow_logging()
    check_counts(cfg)
    distributed.check_shards(cfg)
    seeds = parse_ints(cfg.seeds, "--seeds", "0,1,2")
    if cfg.targets:  # checked before any training, used after it
        parse_ints(cfg.bench_threads, "--bench_threads", "1,2", minimum=1)
    for target in cfg.targets:
        try:
            tfkd.bench.target_kind(target)
        except ValueError as e:
            raise app.UsageError(f"--targets: {e}") from None
    distributed.start_strategy(cfg)
    study = study_lib.Study(recipe, distributed.output_root(cfg), cfg.name,
                            study_lib.recipe_flags(), seeds)
    return study, seeds


@dataclasses.dataclass
class Data:
    """The splits a study trains and evaluates on."""

    train: object
    test: object
    calibration: object
    steps_per_epoch: int
    num_classes: int
    train_unshuffled: object = None  # the train split in a fixed order, for the teacher cache


def load_data(cfg, seed):
    """Train (shuffled with `seed`), test and calibration splits at --data_size."""
    num_classes = tfkd.data.dataset_info(cfg.dataset)["num_classes"]
    shared = {"image_size": cfg.data_size, "batch_size": cfg.batch_size}
    train = tfkd.data.load(cfg.dataset, "train", limit=cfg.limit or None, seed=seed, **shared)
    test = tfkd.data.load(cfg.dataset, "test", limit=cfg.test_limit or None, **shared)
    unshuffled = tfkd.data.load(cfg.dataset, "train", limit=cfg.limit or None, shuffle=False,
                                **shared)
    return Data(train=train, test=test, calibration=calibration_split(cfg),
                steps_per_epoch=num_batches(train), num_classes=num_classes,
                train_unshuffled=unshuffled)


def calibration_split(cfg, count=200):
    """The first `count` training images, unshuffled, for int8 calibration.

    A dataset of its own: iterating the shuffled training set would move its reshuffling on, and
    each student's training order would then depend on the exports before it.
    """
    return tfkd.data.load(cfg.dataset, "train", image_size=cfg.data_size,
                          batch_size=cfg.batch_size, limit=count, shuffle=False)


def optimizer(cfg, steps, learning_rate=None):
    """Adam with a cosine decay over `steps`: short schedules need the final low rate."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate or cfg.learning_rate,
                                                      max(1, steps))
    return keras.optimizers.Adam(schedule)


def num_batches(dataset):
    """Batches per epoch; counted by iterating once when tf.data does not know it."""
    n = int(dataset.cardinality())
    return n if n >= 0 else sum(1 for _ in dataset)


def resized(dataset, size):
    """The dataset resized exactly as the Distiller will resize it for this model."""
    return dataset.map(lambda x, y: (resize_images(x, (size, size)), y))


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


# --teacher_cache=auto holds a split's images in memory while building its cached dataset.
_CACHE_MEMORY_LIMIT = 2 << 30


def distillation_data(cfg, teacher, data, seed):
    """(train, test) datasets for distilling from `teacher`: with --teacher_cache=auto,
    `(images, labels, teacher_logits)` batches from the teacher's cache (built on first use,
    then reused by every student, resolution and seed); else the plain splits.

    The cached train split is shuffled exactly as `data.train` (same seed, same order), so a
    cached and an uncached run see the same batches.
    """
    if not _cacheable(cfg, data):
        return data.train, data.test
    splits = {"train": data.train_unshuffled, "test": data.test}
    folder = os.path.dirname(teacher.path)
    for split, dataset in splits.items():
        if split not in teacher.caches:
            teacher.caches[split] = tfkd.TeacherCache.build(
                teacher.model, dataset, os.path.join(folder, f"logits-{split}.npz"))
    train = teacher.caches["train"].dataset(splits["train"], batch_size=cfg.batch_size,
                                            seed=seed)
    test = teacher.caches["test"].dataset(splits["test"], batch_size=cfg.batch_size,
                                          shuffle=False)
    return train, test


def _cacheable(cfg, data):
    if cfg.teacher_cache == "off" or data.train_unshuffled is None:
        return False
    for dataset in (data.train_unshuffled, data.test):
        batches = int(dataset.cardinality())
        height, width = dataset.element_spec[0].shape[1:3]
        if batches < 0 or batches * cfg.batch_size * height * width * 3 > _CACHE_MEMORY_LIMIT:
            print("teacher cache: off (a split's size is unknown or over "
                  f"{_CACHE_MEMORY_LIMIT >> 30} GiB); the teacher runs on every step",
                  flush=True)
            return False
    return True


def get_teacher(study, cfg, data, name=None, size=None, seed=0):
    """The teacher of this config: loaded if the study trained it before, else trained now.

    Trained on the labels with early stopping on a held-out tenth of the training batches
    (restoring the best epoch), keyed by a hash of everything that shapes it.
    """
    name, size = name or cfg.teacher, size or cfg.teacher_size
    config = {"teacher": name, "size": size, "epochs": cfg.teacher_epochs,
              "patience": cfg.teacher_patience, "dataset": cfg.dataset,
              "data_size": cfg.data_size, "limit": cfg.teacher_limit or cfg.limit,
              "batch_size": cfg.batch_size,
              "learning_rate": cfg.learning_rate, "seed": seed}
    folder = study.teacher_dir(config)
    path, info_path = os.path.join(folder, "teacher.keras"), os.path.join(folder, "teacher.json")
    info = study_lib.read_json(info_path)
    if info and os.path.exists(path):
        print(f"teacher {name}@{size}: reusing {path} (test accuracy {info['accuracy']:.4f})",
              flush=True)
        with distributed.strategy(cfg).scope():  # its variables must live on every replica
            model = keras.saving.load_model(path, safe_mode=True)
    else:
        print(f"Training teacher {name}@{size} ...", flush=True)
        distributed.note_shard_teacher(cfg)
        model, info = _train_teacher(cfg, data, name, size, seed, folder)
        info["config"] = config
        study_lib.save_model(model, path)
        study_lib.write_json(info_path, info)
        print(f"teacher test accuracy {info['accuracy']:.4f} after {info['epochs_run']} "
              "epochs", flush=True)
    module = tfkd.models._family_of(name)
    return Teacher(model=model, path=path, name=name, family=module.FAMILY, kind=module.KIND,
                   size=size, accuracy=info["accuracy"])


def _teacher_splits(cfg, size, seed):
    """(train, held-out, training batches) for the teacher, from a dataset of its own.

    The split is made before shuffling, so no held-out image is ever trained on, and the
    students' shuffled dataset is not iterated (its order stays independent of the teacher).
    """
    full = tfkd.data.load(cfg.dataset, "train", image_size=cfg.data_size,
                          batch_size=cfg.batch_size, shuffle=False,
                          limit=(cfg.teacher_limit or cfg.limit) or None)
    batches = num_batches(full)
    held_out = max(1, batches // 10)
    train = full.skip(held_out).unbatch().shuffle(10000, seed=seed).batch(cfg.batch_size)
    # Re-batching hides the length from tf.data; Keras would warn at the end of every epoch.
    train = train.apply(tf.data.experimental.assert_cardinality(batches - held_out))
    return resized(train, size), resized(full.take(held_out), size), batches - held_out


def _train_teacher(cfg, data, name, size, seed, folder):
    keras.utils.set_random_seed(seed)
    with distributed.strategy(cfg).scope():
        teacher = tfkd.create_model(name, image_size=size, num_classes=data.num_classes)
        train, val, steps = _teacher_splits(cfg, size, seed)
        teacher.compile(optimizer=optimizer(cfg, cfg.teacher_epochs * steps),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
        build_optimizer(teacher)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.teacher_patience,
                                         restore_best_weights=True)
    # Shards sharing a folder may train the same teacher at once: one backup each.
    shard = f"-shard{cfg.shard_index}" if getattr(cfg, "num_shards", 1) > 1 else ""
    backup = study_lib.AtomicBackupAndRestore(os.path.join(folder, "backup" + shard))
    history = teacher.fit(train, validation_data=val, epochs=cfg.teacher_epochs,
                          callbacks=[stop, backup], verbose=cfg.verbose, shuffle=False)
    accuracy = teacher.evaluate(resized(data.test, size), verbose=0,
                                return_dict=True)["accuracy"]
    return teacher, {"accuracy": float(accuracy), "epochs_run": len(history.epoch),
                     "val_accuracy": [float(v) for v in history.history["val_accuracy"]]}


def export_student(cfg, student, path, calibration, test):
    """Exports and checks `student` as --quantization asks; returns the results-row fields.

    Calibrates on training images and evaluates on the test split, so the two never mix.
    """
    check = tfkd.export.export_and_check(
        student, path, test, quantization=cfg.quantization, representative_data=calibration,
        max_drop_points=cfg.max_quantization_drop)
    return {"quantization": cfg.quantization, "tflite_path": path,
            "tflite_bytes": check.export.size_bytes, "tflite_accuracy": check.tflite_accuracy,
            "quantization_drop_points": check.drop_points, "quantization_passed": check.passed,
            "tflite_float_ops": check.export.float_ops}


def quiet_tensorflow_logging():
    """Hides TensorFlow's Python INFO lines unless --verbosity asks for them.

    absl's app.run logs INFO by default, and the TFLite converter then prints a dozen lines per
    export (SavedModel assets, fingerprints) that bury the recipe's own progress.
    """
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)

