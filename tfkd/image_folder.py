"""`image_folder:PATH` datasets: one sub-folder per class, images anywhere below it.

    PATH/<class>/**/<image>                 a fixed ~20% of each class is the test split
    PATH/train/<class>/**/<image>, PATH/test/<class>/**/<image>

Images in nested folders belong to their class folder (as keras.utils.image_dataset_from_directory
counts them). Listing checks each file's first bytes, so non-images, empty class folders and a
single class are reported once, in one warning, before any training.

Small splits (up to `IN_MEMORY_MAX_FILES` files) are decoded once, up front, into memory: the
fastest pipeline epoch after epoch. Larger ones stream: the shuffled file list is read, decoded
and resized in parallel each epoch, optionally through an on-disk cache of the resized images
(`cache_dir=`), so a folder of 100,000 images never has to fit in memory.
"""

import hashlib
import os
import warnings
import zlib

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Above this many files a split streams from disk (measured in benchmarks/image_folder.py).
IN_MEMORY_MAX_FILES = 5000
# Without train/ and test/: files whose path hashes into this bucket are "test".
_TEST_PERCENT = 20
# The first bytes of each format tf.io.decode_image reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
# A streamed split holds at most this many decoded images in its shuffle buffer.
_SHUFFLE_BUFFER = 10_000


def split_dirs(path):
    """(train folder, test folder), the same folder twice when PATH has no train/ and test/."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"image_folder: {path} is not a folder")
    has = [os.path.isdir(os.path.join(path, s)) for s in ("train", "test")]
    if all(has):
        return os.path.join(path, "train"), os.path.join(path, "test")
    if any(has):
        raise ValueError(f"image_folder: {path} has only one of train/ and test/; "
                         "give it both, or neither to split it automatically")
    return path, path


def class_names(directory):
    """The class folders of `directory`, sorted: class ids follow this order."""
    names = sorted(d for d in os.listdir(directory)
                   if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))
    if not names:
        raise ValueError(f"image_folder: no class subfolders in {directory}; expected "
                         f"{directory}/<class_name>/<image>{'|'.join(IMAGE_EXTENSIONS)}")
    return names


def list_split(path, split):
    """(files, labels, class names) of one split, sorted, with one warning for what looks
    wrong."""
    train_dir, test_dir = split_dirs(path)
    classes = class_names(train_dir)
    directory = train_dir if split == "train" else test_dir
    extra = set(class_names(directory)) - set(classes)
    if extra:
        raise ValueError(f"image_folder: {directory} has classes {sorted(extra)} that "
                         f"{train_dir} lacks; both splits need the same class folders")
    files, labels, problems = [], [], {"empty": [], "other": [], "unreadable": []}
    for label, cls in enumerate(classes):
        found = _images_below(os.path.join(directory, cls), problems)
        if train_dir == test_dir:
            found = [f for f in found
                     if _is_test_file(os.path.relpath(f, directory)) == (split == "test")]
        if not found:
            problems["empty"].append(os.path.join(directory, cls))
        files += found
        labels += [label] * len(found)
    if not files:
        raise ValueError(f"image_folder: no {split} images ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"under {directory}")
    _warn(path, split, classes, problems)
    return files, labels, classes


def _images_below(folder, problems):
    """Image files anywhere below `folder`, sorted by path; other files go to `problems`."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = os.path.join(root, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                problems["other"].append(file)
            elif _looks_like_an_image(file):
                found.append(file)
            else:
                problems["unreadable"].append(file)
    return sorted(found)


def _looks_like_an_image(file):
    try:
        with open(file, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_MAGIC)


def _is_test_file(relative_path):
    # A hash of the path below the split folder, not file order, so adding files never moves
    # old ones between the splits.
    return zlib.crc32(relative_path.replace(os.sep, "/").encode()) % 100 < _TEST_PERCENT


def _warn(path, split, classes, problems):
    """One warning naming everything that looked wrong in the listing, if anything did."""
    notes = []
    if len(classes) == 1:
        notes.append(f"only one class ({classes[0]}): a classifier needs at least two class "
                     "folders")
    if problems["empty"]:
        notes.append(f"class folder(s) with no {split} images: {_names(problems['empty'])}")
    if problems["unreadable"]:
        notes.append(f"skipped {len(problems['unreadable'])} unreadable image file(s) (not "
                     f"the format their name says): {_names(problems['unreadable'])}")
    if problems["other"]:
        notes.append(f"ignored {len(problems['other'])} file(s) that are not images "
                     f"({', '.join(IMAGE_EXTENSIONS)}): {_names(problems['other'])}")
    if notes:
        warnings.warn(f"image_folder {path} ({split}): " + "; ".join(notes), stacklevel=5)


def _names(files, shown=5):
    more = f", ... ({len(files) - shown} more)" if len(files) > shown else ""
    return ", ".join(files[:shown]) + more


def load_arrays(files, labels, size, path):
    """(images (N, H, W, 3) uint8, labels (N,) int32), decoded now; unreadable files skipped
    with one warning."""
    images, kept, bad = [], [], []
    for file, label in zip(files, labels):
        try:
            with open(file, "rb") as f:
                # channels=3 turns grey into RGB and drops alpha; GIFs give their first frame.
                image = tf.io.decode_image(f.read(), channels=3, expand_animations=False)
            images.append(resize(image, size).numpy())
            kept.append(label)
        except (OSError, tf.errors.OpError):
            bad.append(file)
    if bad:
        warnings.warn(f"image_folder: skipped {len(bad)} unreadable image file(s) of "
                      f"{len(files)} in {path}: {_names(bad)}", stacklevel=5)
    if not images:
        raise ValueError(f"image_folder: none of the {len(files)} images under {path} could "
                         "be read")
    return np.stack(images), np.asarray(kept, np.int32)


def stream(files, labels, size, batch_size, *, shuffle, seed, cache_dir=None):
    """A dataset that reads, decodes and resizes the files each epoch, in parallel.

    Its length is known (batches of `len(files)` images): a file that fails to decode after
    all is skipped with a logged warning and the epoch takes one image more from the next
    pass instead, so an epoch never ends early or mid-way with an error.
    """
    count = len(files)
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(files), tf.constant(labels, tf.int32)))
    if shuffle and not cache_dir:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)  # names: cheap
    ds = ds.map(lambda file, label: (_decode(file, size), label),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).repeat().take(count)
    if cache_dir:  # after take: the cache is complete (and kept) once the first epoch ends
        ds = ds.cache(_cache_file(cache_dir, files, size))
        if shuffle:  # after the cache, which replays the order it was written in
            ds = ds.shuffle(min(count, _SHUFFLE_BUFFER), seed=seed,
                            reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _decode(file, size):
    image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return resize(image, size)


def _cache_file(cache_dir, files, size):
    """A cache file per list of files and size: another folder or size never reads it."""
    key = hashlib.sha256("\n".join([*files, str(size)]).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    return os.path.join(cache_dir, f"image_folder-{key}")


def resize(images, size):
    """Bilinear resize of uint8 images, rounded back to uint8; a no-op at the right size."""
    if tuple(images.shape[-3:-1]) == size:
        return images
    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
