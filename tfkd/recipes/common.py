"""Pieces shared by the recipes: flags every recipe takes, teacher training, timing."""

import json
import os
import time

import keras
from absl import app, flags
from absl import logging as absl_logging

import tfkd
from tfkd.distiller import resize_images


def define_common_flags():
    """Flags shared by every recipe (call once, at import of the recipe module)."""
    flags.DEFINE_string("dataset", "fashion_mnist",
                        "Dataset: fashion_mnist, image_folder:PATH or tfds:NAME.")
    flags.DEFINE_integer("data_size", 28, "Side the dataset is loaded at; the Distiller "
                         "resizes each batch to each model's own input size.")
    flags.DEFINE_string("teacher", "convnet_m", "Teacher model (tfkd.list_models()).")
    flags.DEFINE_integer("teacher_size", 28, "Teacher input side.")
    flags.DEFINE_integer("teacher_epochs", 3, "Epochs to train the teacher.")
    flags.DEFINE_integer("epochs", 3, "KD epochs per student.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_float("learning_rate", 2e-3, "Peak Adam learning rate (cosine decay).")
    flags.DEFINE_integer("limit", 20000, "Training examples used (a fixed subset); 0: all.")
    flags.DEFINE_integer("test_limit", 0, "Test examples used; 0: the whole test split.")
    flags.DEFINE_integer("seed", 0, "Random seed (keras.utils.set_random_seed).")
    flags.DEFINE_float("temperature", 4.0, "KD temperature.")
    flags.DEFINE_float("student_loss_weight", 0.5, "Weight of the hard-label loss.")
    flags.DEFINE_string("output_dir", "runs/resolution_sweep", "Where models and results go.")
    flags.DEFINE_integer("verbose", 0, "Keras fit verbosity (0, 1 or 2).")
    flags.DEFINE_enum("quantization", "int8", [*tfkd.export.QUANTIZATIONS, "none"],
                      "TFLite export of each student, checked against the float model on the "
                      "test split; none: no export.")
    flags.DEFINE_float("max_quantization_drop", 1.0, "Accuracy points the export may lose "
                       "before it is flagged.")


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


def load_splits(cfg):
    """(train, test) datasets at `cfg.data_size`, as the flags ask."""
    common = {"image_size": cfg.data_size, "batch_size": cfg.batch_size, "seed": cfg.seed}
    train = tfkd.data.load(cfg.dataset, "train", limit=cfg.limit or None, **common)
    test = tfkd.data.load(cfg.dataset, "test", limit=cfg.test_limit or None, **common)
    return train, test


def optimizer(cfg, steps):
    """Adam with a cosine decay over `steps`: short schedules need the final low rate."""
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, steps))
    return keras.optimizers.Adam(schedule)


def num_batches(dataset):
    """Batches per epoch; counted by iterating once when tf.data does not know it."""
    n = int(dataset.cardinality())
    return n if n >= 0 else sum(1 for _ in dataset)


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch in `self.seconds`."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def train_teacher(cfg, train, test, num_classes, steps_per_epoch):
    """Trains the teacher on the labels; returns (model, test accuracy)."""
    keras.utils.set_random_seed(cfg.seed)
    teacher = tfkd.create_model(cfg.teacher, image_size=cfg.teacher_size,
                                num_classes=num_classes)
    teacher.compile(optimizer=optimizer(cfg, cfg.teacher_epochs * steps_per_epoch),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    # shuffle=False: the dataset shuffles itself (Keras would warn that it ignores shuffle=True).
    teacher.fit(_resized(train, cfg.teacher_size), epochs=cfg.teacher_epochs,
                verbose=cfg.verbose, shuffle=False)
    accuracy = teacher.evaluate(_resized(test, cfg.teacher_size), verbose=0,
                                return_dict=True)["accuracy"]
    return teacher, accuracy


def _resized(dataset, size):
    """The dataset resized exactly as the Distiller will resize it for this model."""
    return dataset.map(lambda x, y: (resize_images(x, (size, size)), y))


def calibration_split(cfg, count=200):
    """The first `count` training images, unshuffled, for int8 calibration.

    A dataset of its own: iterating the shuffled training set would move its reshuffling on, and
    each student's training order would then depend on the exports before it.
    """
    return tfkd.data.load(cfg.dataset, "train", image_size=cfg.data_size,
                          batch_size=cfg.batch_size, limit=count, shuffle=False)


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
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def write_json(path, payload):
    """Writes JSON atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
