"""The datasets a study trains, distils, calibrates and evaluates on, from its config."""

import dataclasses
import os

import tensorflow as tf

import tfkd
from tfkd.checks import checked_labels
from tfkd.distiller import resize_images

# teacher_cache="auto" holds a split's images in memory while building its cached dataset.
_CACHE_MEMORY_LIMIT = 2 << 30


@dataclasses.dataclass
class Data:
    """The splits a study trains and evaluates on."""

    train: object
    test: object
    calibration: object
    steps_per_epoch: int
    num_classes: int
    train_unshuffled: object = None  # the train split in a fixed order, for the teacher cache


def load_data(config, seed):
    """Train (shuffled with `seed`), test and calibration splits at `config.data_size`."""
    num_classes = tfkd.data.dataset_info(config.dataset)["num_classes"]
    shared = {"image_size": config.data_size, "batch_size": config.batch_size}
    limit = config.limit or None
    train = tfkd.data.load(config.dataset, "train", limit=limit, seed=seed, **shared)
    test = tfkd.data.load(config.dataset, "test", limit=config.test_limit or None, **shared)
    unshuffled = tfkd.data.load(config.dataset, "train", limit=limit, shuffle=False, **shared)
    return Data(train=train, test=test, calibration=calibration_split(config),
                steps_per_epoch=num_batches(train), num_classes=num_classes,
                train_unshuffled=unshuffled)


def calibration_split(config, count=200):
    """The first `count` training images, unshuffled, for int8 calibration.

    A dataset of its own: iterating the shuffled training set would move its reshuffling on, and
    each student's training order would then depend on the exports before it.
    """
    return tfkd.data.load(config.dataset, "train", image_size=config.data_size,
                          batch_size=config.batch_size, limit=count, shuffle=False)


def teacher_splits(config, size, seed):
    """(train, held-out, training batches) for a teacher at side `size`, from data of its own.

    The split is made before shuffling, so no held-out image is ever trained on, and the
    students' shuffled dataset is not iterated (its order stays independent of the teacher).
    """
    full = tfkd.data.load(config.dataset, "train", image_size=config.data_size,
                          batch_size=config.batch_size, shuffle=False,
                          limit=(config.teacher_limit or config.limit) or None)
    batches = num_batches(full)
    held_out = max(1, batches // 10)
    train = full.skip(held_out).unbatch().shuffle(10000, seed=seed).batch(config.batch_size)
    # Re-batching hides the length from tf.data; Keras would warn at the end of every epoch.
    train = train.apply(tf.data.experimental.assert_cardinality(batches - held_out))
    return resized(train, size), resized(full.take(held_out), size), batches - held_out


def num_batches(dataset):
    """Batches per epoch; counted by iterating once when tf.data does not know it."""
    n = int(dataset.cardinality())
    return n if n >= 0 else sum(1 for _ in dataset)


def resized(dataset, size, num_classes=None):
    """The dataset resized exactly as the Distiller will resize it for this model; with
    `num_classes`, its labels are checked as the Distiller checks them (`tfkd.checks`)."""
    if num_classes is None:
        return dataset.map(lambda x, y: (resize_images(x, (size, size)), y))
    return dataset.map(lambda x, y: (resize_images(x, (size, size)),
                                     checked_labels(y, num_classes)))


def distillation_data(config, teacher, data, seed):
    """(train, test) datasets for distilling from `teacher` (a `tfkd.recipes.teacher.Teacher`).

    With teacher_cache="auto", `(images, labels, teacher_logits)` batches from the teacher's
    cache (built on first use, then reused by every student, resolution and seed); else the
    plain splits. The cached train split is shuffled exactly as `data.train` (same seed, same
    order), so a cached and an uncached run see the same batches.
    """
    if not _cacheable(config, data):
        return data.train, data.test
    splits = {"train": data.train_unshuffled, "test": data.test}
    folder = os.path.dirname(teacher.path)
    for split, dataset in splits.items():
        if split not in teacher.caches:
            teacher.caches[split] = tfkd.TeacherCache.build(
                teacher.model, dataset, os.path.join(folder, f"logits-{split}.npz"))
    train = teacher.caches["train"].dataset(splits["train"], batch_size=config.batch_size,
                                            seed=seed)
    test = teacher.caches["test"].dataset(splits["test"], batch_size=config.batch_size,
                                          shuffle=False)
    return train, test


def _cacheable(config, data):
    if config.teacher_cache == "off" or data.train_unshuffled is None:
        return False
    for dataset in (data.train_unshuffled, data.test):
        batches = int(dataset.cardinality())
        height, width = dataset.element_spec[0].shape[1:3]
        if batches < 0 or batches * config.batch_size * height * width * 3 > _CACHE_MEMORY_LIMIT:
            print("teacher cache: off (a split's size is unknown or over "
                  f"{_CACHE_MEMORY_LIMIT >> 30} GiB); the teacher runs on every step",
                  flush=True)
            return False
    return True
