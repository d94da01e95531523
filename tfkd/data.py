"""tf.data input pipelines that give every model the same thing: uint8 RGB pixels + int labels.

Models normalize inside their graphs (see DESIGN.md), so the pipeline only decodes, converts
to RGB and resizes. Every source ends in the same in-memory pipeline
(`from_tensor_slices -> shuffle -> batch -> map(resize) -> prefetch`), except TFDS and image
folders too large to hold in memory, which stream (see `tfkd.image_folder`).

    ds = load("fashion_mnist", "train", image_size=32, batch_size=128, limit=12000)
    ds = load("image_folder:/data/flowers", "test", image_size=96, batch_size=32)
    ds = from_numpy(x, y, image_size=(64, 48), batch_size=64, num_classes=10)
"""

import gzip
import os
import zlib

import numpy as np
import tensorflow as tf

from tfkd import image_folder, tfds_source

# Overridable so tests can simulate a machine without them.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
KERAS_CACHE_DIR = None  # None: $KERAS_HOME or ~/.keras, as Keras itself does.

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_VALID_NAMES = "'fashion_mnist', 'image_folder:PATH', 'tfds:NAME'"
_CACHE = {}  # parsed Fashion-MNIST arrays, keyed by file identity: recipes reload them often.


def load(name, split, *, image_size, batch_size, limit=None, shuffle=None, seed=0,
         num_classes=None, cache_dir=None):
    """Builds a batched, prefetched dataset of `(uint8 RGB images, int32 labels)`.

    Args:
      name: `"fashion_mnist"`, `"image_folder:PATH"` or `"tfds:NAME"`. `image_folder` wants one
        subfolder per class (ids follow sorted folder names; images in nested folders belong
        to their class). If PATH holds `train/` and `test/`, those are the splits; otherwise a
        fixed ~20% of files (chosen by a hash of their path, so stable across runs and when
        files are added) is the test split. A split of up to
        `tfkd.image_folder.IN_MEMORY_MAX_FILES` images is decoded once, here, into memory;
        a larger one streams from disk. Non-images, unreadable files and empty class folders
        are reported in one warning. `tfds:NAME` streams from TensorFlow Datasets (an
        optional install) and passes `split` to it unchanged.
      split: `"train"` or `"test"`.
      image_size: int for square images or `(height, width)`.
      batch_size: examples per batch; the last batch may be smaller.
      limit: keep only the first `limit` examples of the split (before shuffling).
      shuffle: shuffle every epoch; None shuffles the train split only.
      seed: shuffle seed, so runs see the same order.
      num_classes: if given, labels must lie in `[0, num_classes)`.
      cache_dir: for a streamed image folder, a folder for an on-disk cache of the resized
        images (the first epoch writes it, later ones read it instead of decoding again).

    Returns:
      A `tf.data.Dataset` of `(images (B, H, W, 3) uint8, labels (B,) int32)`.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _check_positive_int(batch_size, "batch_size")
    if limit is not None:
        _check_positive_int(limit, "limit")
    shuffle = split == "train" if shuffle is None else shuffle
    kind, _, arg = name.partition(":")
    if name == "fashion_mnist":
        x, y = fashion_mnist_arrays(split)
    elif kind == "image_folder" and arg:
        return _image_folder(arg, split, _size(image_size), batch_size, limit, shuffle, seed,
                             num_classes, cache_dir)
    elif kind == "tfds" and arg:
        return _tfds_dataset(arg, split, _size(image_size), batch_size, limit, shuffle, seed,
                             num_classes)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names are {_VALID_NAMES}")
    return from_numpy(x[:limit], y[:limit], image_size=image_size, batch_size=batch_size,
                      shuffle=shuffle, seed=seed, num_classes=num_classes)


def from_numpy(x, y, *, image_size, batch_size, shuffle=False, seed=0, num_classes=None):
    """Builds the same pipeline as `load` from arrays in memory.

    Args:
      x: images `(N, H, W)` or `(N, H, W, 1|3|4)`, any numeric dtype, pixel values 0..255.
        Grey becomes RGB, alpha is dropped.
      y: integer class ids `(N,)` (or `(N, 1)`), not one-hot.
      image_size: int for square images or `(height, width)`.
      batch_size: examples per batch; the last batch may be smaller.
      shuffle: shuffle every epoch.
      seed: shuffle seed.
      num_classes: if given, labels must lie in `[0, num_classes)`.

    Returns:
      A `tf.data.Dataset` of `(images (B, H, W, 3) uint8, labels (B,) int32)`.
    """
    x, y = _check_pixels(x), _check_labels(y, num_classes)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels; they must match")
    _check_positive_int(batch_size, "batch_size")
    if len(x) == 0:
        raise ValueError("x and y are empty; a dataset needs at least one example")
    size = _size(image_size)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        # A full-size buffer is a true shuffle; uint8 arrays this size fit in memory anyway.
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # Resizing whole batches is ~3x faster than per image (measured: 35k vs 100k img/s).
    ds = ds.batch(batch_size).map(lambda im, lb: (_to_rgb(_resize(im, size)), lb),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def dataset_info(name):
    """Returns `{"num_classes": int, "class_names": [str]}` for a `load` name."""
    kind, _, arg = name.partition(":")
    if name == "fashion_mnist":
        names = list(FASHION_MNIST_CLASSES)
    elif kind == "image_folder" and arg:
        names = image_folder.class_names(image_folder.split_dirs(arg)[0])
    elif kind == "tfds" and arg:
        label = tfds_source.builder(arg).info.features["label"]
        names = list(label.names)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names are {_VALID_NAMES}")
    return {"num_classes": len(names), "class_names": names}


# ---- shared pieces -------------------------------------------------------------------------

def _check_positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")


def _size(image_size):
    size = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    if len(size) != 2 or not all(int(s) == s and s > 0 for s in size):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return tuple(int(s) for s in size)


_resize = image_folder.resize


def _to_rgb(images):
    """Grey -> RGB by repeating the channel; RGBA -> RGB by dropping alpha (static shapes)."""
    channels = images.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(images)
    return images[..., :3] if channels == 4 else images


def _check_pixels(x):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"x must have shape (N, H, W) or (N, H, W, 1|3|4), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"x must be a real numeric array, got dtype {x.dtype}")
    if x.dtype == np.uint8 or x.size == 0:
        return x[..., :3] if x.shape[-1] == 4 else x
    lo, hi = float(x.min()), float(x.max())
    if not 0 <= lo <= hi <= 255:  # written so that NaN fails too
        raise ValueError(f"x must hold pixel values 0..255 (models normalize inside), got "
                         f"range [{lo}, {hi}]")
    is_float = np.issubdtype(x.dtype, np.floating)
    if is_float and 0 < hi <= 1:
        raise ValueError("x looks scaled to [0, 1]; pass pixel values 0..255, e.g. x * 255")
    x = x[..., :3] if x.shape[-1] == 4 else x  # before the copy: 25% less to convert
    return (np.rint(x) if is_float else x).astype(np.uint8)


def _check_labels(y, num_classes=None):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise ValueError(f"y has shape {y.shape}, which looks one-hot; pass class ids, "
                         "e.g. np.argmax(y, axis=1)")
    if y.ndim != 1:
        raise ValueError(f"y must be class ids of shape (N,), got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y))):
        raise ValueError(f"y must hold integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    bad = np.flatnonzero(y < 0) if num_classes is None else np.flatnonzero(
        (y < 0) | (y >= num_classes))
    if bad.size:
        i = int(bad[0])
        where = "below 0" if num_classes is None else f"outside [0, {num_classes})"
        hint = ("labels must be class ids 0..C-1" if y[i] < 0 else
                f"build the model with num_classes={int(y.max()) + 1} (or more)")
        raise ValueError(f"label {int(y[i])} at index {i} is {where} "
                         f"({bad.size} bad labels in all); {hint}")
    return y.astype(np.int32)


# ---- Fashion-MNIST -------------------------------------------------------------------------

def fashion_mnist_arrays(split):
    """Returns `(images (N, 28, 28) uint8, labels (N,) uint8)` from the first source found.

    Sources, in order: `$TFKD_DATA_DIR` (or its `fashion-mnist/` subfolder), `DEBIAN_DIR`,
    the Keras cache, then Keras's downloader. Arrays are cached in memory per process.
    """
    for directory in _fashion_mnist_dirs():
        # All four files, so that train and test always come from the same source.
        if all(os.path.isfile(os.path.join(directory, f)) for pair in _FILES.values()
               for f in pair):
            return _read_idx_pair(*(os.path.join(directory, f) for f in _FILES[split]))
    if "download" not in _CACHE:
        try:
            (x_train, y_train), (x_test, y_test) = _keras_download()
        except Exception as e:  # noqa: BLE001 - any failure here means "no network/no Keras"
            raise FileNotFoundError(_missing_message(e)) from e
        _CACHE["download"] = {"train": (x_train, y_train), "test": (x_test, y_test)}
    return _CACHE["download"][split]


def _fashion_mnist_dirs():
    dirs = []
    env = os.environ.get("TFKD_DATA_DIR")
    if env:
        dirs += [env, os.path.join(env, "fashion-mnist")]
    return dirs + [DEBIAN_DIR, _keras_cache_dir()]


def _keras_cache_dir():
    home = KERAS_CACHE_DIR or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(os.path.expanduser(home), "datasets", "fashion-mnist")


def _keras_download():
    import keras  # Deferred: only needed when every local source is missing.
    return keras.datasets.fashion_mnist.load_data()


def _missing_message(error):
    files = " ".join(_FILES["train"] + _FILES["test"])
    env, cache = os.environ.get("TFKD_DATA_DIR"), _keras_cache_dir()
    return (
        "Fashion-MNIST not found. Looked in (first match wins):\n"
        f"  1. $TFKD_DATA_DIR ({'= ' + env if env else 'not set'}): "
        f"export TFKD_DATA_DIR=/folder/with/the/files  (holding {files})\n"
        f"  2. {DEBIAN_DIR}: sudo apt-get install dataset-fashion-mnist\n"
        f"  3. Keras cache {cache}: mkdir -p {cache} && cp {files} {cache}/\n"
        f"  4. Keras download (failed: {type(error).__name__}: {error}): connect to the "
        "network and rerun; Keras then saves the files to the cache in 3.")


def _read_idx_pair(images_path, labels_path):
    key = tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size)
                for p in (images_path, labels_path))
    if key not in _CACHE:
        x, y = _read_idx(images_path, 2051, 3), _read_idx(labels_path, 2049, 1)
        if len(x) != len(y):
            raise ValueError(f"{images_path} has {len(x)} images but {labels_path} has "
                             f"{len(y)} labels; re-download both")
        _CACHE[key] = (x, y)
    return _CACHE[key]


def _read_idx(path, magic, ndim):
    """Parses a gzipped idx file of uint8 (the MNIST format: big-endian int32 header)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"corrupt idx file {path}: {e}; delete it and re-download") from e
    header = 4 * (1 + ndim)
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic or len(raw) < header:
        raise ValueError(f"corrupt idx file {path}: magic number {got}, expected {magic}; "
                         "delete it and re-download")
    dims = np.frombuffer(raw, ">i4", count=ndim, offset=4).tolist()
    if len(raw) - header != int(np.prod(dims)):
        raise ValueError(f"corrupt idx file {path}: header says {dims} "
                         f"({int(np.prod(dims))} bytes) but holds {len(raw) - header} bytes; "
                         "delete it and re-download")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


# ---- image folders (tfkd.image_folder) ----------------------------------------------------

def _image_folder(path, split, size, batch_size, limit, shuffle, seed, num_classes, cache_dir):
    files, labels, names = image_folder.list_split(path, split)
    files, labels, classes = files[:limit], labels[:limit], len(names)
    if num_classes is not None and classes > num_classes:
        raise ValueError(f"image_folder:{path} has {classes} classes but num_classes="
                         f"{num_classes}; build the model with num_classes={classes}")
    if len(files) <= image_folder.IN_MEMORY_MAX_FILES:
        x, y = image_folder.load_arrays(files, labels, size, path)
        return from_numpy(x, y, image_size=size, batch_size=batch_size, shuffle=shuffle,
                          seed=seed)
    return image_folder.stream(files, labels, size, batch_size, shuffle=shuffle, seed=seed,
                               cache_dir=cache_dir)


# ---- TFDS (tfkd.tfds_source) --------------------------------------------------------------

def _tfds_dataset(name, split, size, batch_size, limit, shuffle, seed, num_classes):
    builder = tfds_source.prepared(name)
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    features = builder.info.features
    label = features["label"] if "label" in features else None
    if num_classes is not None and getattr(label, "num_classes", 0) > num_classes:
        raise ValueError(f"tfds:{name} has {label.num_classes} classes (labels up to "
                         f"{label.num_classes - 1}) but num_classes={num_classes}; build the "
                         f"model with num_classes={label.num_classes}")
    if limit is not None:
        ds = ds.take(limit)
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    # TFDS images vary in size, so they are resized one by one before batching.
    ds = ds.map(lambda im, lb: (_to_rgb(_resize(im, size)), tf.cast(lb, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
