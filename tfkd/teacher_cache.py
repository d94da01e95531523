"""Teacher logits computed once and reused by every student, resolution and seed.

KD runs the teacher on every student step, although the teacher never changes. TinyViT's cure:
run it once over the data, store its logits per example, and train students on
`(images, labels, teacher_logits)` batches. `tfkd.Distiller` recognizes such batches and skips
the teacher forward pass.

    base = tfkd.data.load("fashion_mnist", "train", image_size=28, batch_size=128,
                          shuffle=False)                       # deterministic order
    cache = tfkd.TeacherCache.build(teacher, base, "cache/teacher-train.npz")
    train = cache.dataset(base, batch_size=128, seed=0)        # shuffled every epoch
    tfkd.Distiller(teacher=teacher, student=student).fit(train, epochs=3)

What is stored: the teacher's full logits (float16), or with `top_k=k` the k largest
log-probabilities (at temperature 1) and their class ids. Top-k entries are expanded back to full
rows as TinyViT does: the k stored classes keep their probabilities and the remaining mass is
spread evenly over the other classes. At temperature T != 1 the expanded row is softened like a
logit row, so it stays an approximation there (the dropped classes are all equal).

Augmentation: none. The cache pairs each example with the logits of that exact image, so the
dataset must be deterministic, and random augmentation must not be applied after
`dataset()`: an augmented image would be trained towards the teacher's answer for the
unaugmented one. (TinyViT also stores per-epoch augmentation seeds; that is not implemented.)
Train with augmentation through the uncached path instead: the Distiller then runs the teacher
on every augmented batch.

Staleness: the file records a key made of a hash of the teacher (architecture and weights), of
the images and labels, of the teacher's input size and of k. `build` recomputes when the key
differs (and says why), `load(path, teacher=...)` and `dataset(...)` refuse a cache that does
not match the teacher or the data given to them: a stale cache is never used silently.

The images are held in memory while a cached dataset is built, as `tfkd.data` does for
Fashion-MNIST and image folders.
"""

import hashlib
import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfkd.checks import check_classifier
from tfkd.distiller import resize_images

_FORMAT = 1
# Rows of the expanded top-k distribution never drop below this probability per class: an exact
# zero would give log(0) = -inf in the losses when the stored classes hold all the mass.
_MIN_PROBABILITY = 1e-8


class StaleCacheError(ValueError):
    """The cache on disk was built from another teacher or other data."""


class TeacherCache:
    """Per-example teacher logits in one `.npz` file (see the module docstring).

    Build one with `TeacherCache.build`, open one with `TeacherCache.load`; train on
    `cache.dataset(base)`.

    Attributes:
        path: the file.
        key: hash of teacher, data, teacher input size and k (hex).
        count: examples.
        num_classes: classes of the teacher.
        top_k: k, or None for full logits.
        dtype: storage dtype of the logits ("float16" or "float32").
        teacher_hash, data_hash: the hashes behind the key.
    """

    def __init__(self, path, meta, arrays):
        self.path = path
        self.meta = meta
        self.key = meta["key"]
        self.count = meta["count"]
        self.num_classes = meta["num_classes"]
        self.top_k = meta["top_k"]
        self.dtype = meta["dtype"]
        self.teacher_hash = meta["teacher_hash"]
        self.data_hash = meta["data_hash"]
        self._arrays = arrays

    @classmethod
    def build(cls, teacher, dataset, path, *, top_k=None, dtype="float16", batch_size=256,
              verbose=True):
        """Runs `teacher` once over `dataset` and stores its logits in `path` (atomically).

        When `path` already holds a cache with the same key, it is loaded instead and the
        teacher does not run; a cache with another key is rebuilt, with a message saying why.

        Args:
            teacher: a `keras.Model` with a fixed input size that outputs logits (checked as
                `tfkd.Distiller` checks it). Each batch is resized to its input size as the
                Distiller resizes it.
            dataset: a finite, deterministic `tf.data.Dataset` of `(images, labels)`, batched
                or not; the same one (same order) is later passed to `dataset()`.
            path: the `.npz` file to write.
            top_k: store only the k largest log-probabilities per example (for many classes),
                or None for the full logits.
            dtype: "float16" (half the size; see the README for its measured effect) or
                "float32".
            batch_size: batch size of the teacher's forward pass.
            verbose: print one line saying whether the cache was built or reused.

        Returns:
            The `TeacherCache`.

        Raises:
            ValueError: with what to do, for a bad path, k, dtype or dataset.
        """
        _check_path(path)
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        size, num_classes = check_classifier(teacher, "teacher")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or not 1 <= top_k < num_classes):
            raise ValueError(f"top_k must be an integer in [1, {num_classes - 1}] for a "
                             f"{num_classes}-class teacher, or None to store full logits; "
                             f"got {top_k!r}")
        images, labels = _materialize(dataset)
        meta = {"format": _FORMAT, "teacher_hash": teacher_hash(teacher),
                "data_hash": data_hash(images, labels), "teacher_size": list(size),
                "top_k": top_k, "dtype": dtype, "num_classes": num_classes,
                "count": int(len(labels))}
        meta["key"] = _hash_json({k: v for k, v in meta.items() if k != "count"})
        old = None
        if os.path.exists(path):
            try:
                old = _read(path)
            except ValueError as e:  # a cache is rebuildable: replace it, but say so
                _say(verbose, f"teacher cache: rebuilding {path}: {e}")
        if old is not None and old.key == meta["key"]:
            _say(verbose, f"teacher cache: reusing {path} ({old.count} examples)")
            return old
        if old is not None:
            _say(verbose, f"teacher cache: rebuilding {path}: {_difference(old.meta, meta)}")
        logits = _predict(teacher, images, size, batch_size)
        arrays = _encode(logits, top_k, dtype)
        _write(path, meta, arrays)
        _say(verbose, f"teacher cache: wrote {path} ({meta['count']} examples, "
                      f"{os.path.getsize(path) / 1e6:.1f} MB)")
        return cls(path, meta, arrays)

    @classmethod
    def load(cls, path, *, teacher=None):
        """Opens a cache; with `teacher`, refuses one built from another teacher.

        Raises:
            FileNotFoundError: no file at `path`.
            StaleCacheError: `teacher` differs from the one the cache was built from.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(f"No teacher cache at {path}; build one with "
                                    "tfkd.TeacherCache.build(teacher, dataset, path).")
        cache = _read(path)
        if teacher is not None and teacher_hash(teacher) != cache.teacher_hash:
            raise StaleCacheError(f"The teacher cache {path} was built from another teacher "
                                  "(architecture or weights differ); rebuild it with "
                                  "tfkd.TeacherCache.build(teacher, dataset, path).")
        return cache

    def logits(self):
        """The full (count, classes) float32 logit rows; top-k rows are expanded."""
        if self.top_k is None:
            return self._arrays["logits"].astype("float32")
        return expand_top_k_numpy(self._arrays["values"], self._arrays["indices"],
                                  self.num_classes)

    def dataset(self, dataset, *, batch_size, shuffle=True, seed=0):
        """`(images, labels, teacher_logits)` batches for `Distiller.fit` / `evaluate`.

        Args:
            dataset: the dataset the cache was built from (same examples, same order).
            batch_size: examples per batch; the last batch may be smaller.
            shuffle: reshuffle every epoch (as `tfkd.data.load` shuffles a train split; the
                same seed gives the same order as the uncached split).
            seed: shuffle seed.

        Raises:
            StaleCacheError: `dataset` is not the data the cache was built from.
        """
        images, labels = _materialize(dataset)
        if data_hash(images, labels) != self.data_hash:
            raise StaleCacheError(
                f"The teacher cache {self.path} was built from other data ({self.count} "
                f"examples; this dataset has {len(labels)}, or the images, labels or their "
                "order differ). Pass the same deterministic dataset (shuffle=False, no random "
                "augmentation) or rebuild with tfkd.TeacherCache.build.")
        stored = ((self._arrays["logits"],) if self.top_k is None
                  else (self._arrays["values"], self._arrays["indices"]))
        ds = tf.data.Dataset.from_tensor_slices((images, labels, *stored))
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        num_classes, top_k = self.num_classes, self.top_k

        def to_logits(x, y, *stored_batch):
            if top_k is None:
                return x, y, tf.cast(stored_batch[0], tf.float32)
            return x, y, expand_top_k(*stored_batch, num_classes)

        ds = ds.batch(batch_size).map(to_logits, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)


def expand_top_k(values, indices, num_classes):
    """Full log-probability rows from top-k log-probabilities, as TinyViT expands them.

    The k given classes keep their probabilities; the rest of the mass (1 - their sum) is
    spread evenly over the other `num_classes - k` classes (at least 1e-8 each).

    Args:
        values: (batch, k) log-probabilities.
        indices: (batch, k) class ids.
        num_classes: classes per row.

    Returns:
        (batch, num_classes) float32 log-probabilities, usable as teacher logits.
    """
    values = tf.cast(values, tf.float32)
    k = tf.shape(values)[-1]
    rest = tf.maximum(1.0 - tf.reduce_sum(tf.exp(values), axis=-1), 0.0)
    per_class = tf.maximum(rest / tf.cast(num_classes - k, tf.float32), _MIN_PROBABILITY)
    picked = tf.one_hot(tf.cast(indices, tf.int32), num_classes, dtype=tf.float32)  # (B,k,C)
    mask = tf.reduce_sum(picked, axis=1)
    stored = tf.reduce_sum(picked * values[..., None], axis=1)
    return stored + (1.0 - mask) * tf.math.log(per_class)[:, None]


def expand_top_k_numpy(values, indices, num_classes):
    """`expand_top_k` for numpy arrays (same result)."""
    return expand_top_k(values, indices, num_classes).numpy()


def teacher_hash(model):
    """sha256 of a model's architecture (its config) and weights."""
    h = hashlib.sha256()
    config = keras.saving.serialize_keras_object(model)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        h.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def data_hash(images, labels):
    """sha256 of the images and labels, in order (shapes and dtypes included)."""
    h = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype}:{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(".npz"):
        raise ValueError(f"The cache path must end in .npz, got {path!r}")


def _materialize(dataset):
    """(images, labels) numpy arrays of a finite dataset of (images, labels) examples/batches."""
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"Expected a tf.data.Dataset of (images, labels), got "
                         f"{type(dataset).__name__}; e.g. tfkd.data.load(..., shuffle=False).")
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("The dataset is infinite (.repeat()?); the cache needs one pass over "
                         "a finite dataset. Drop the .repeat().")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError("The dataset must yield (images, labels); it yields "
                         f"{spec}. Map it to two elements before caching.")
    batched = len(spec[0].shape) == 4
    images, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        images.append(x if batched else x[None])
        labels.append(np.reshape(y, (-1,)))
    if not images:
        raise ValueError("The dataset is empty; the cache needs at least one example.")
    return np.concatenate(images), np.concatenate(labels)


def _predict(teacher, images, size, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    ds = ds.map(lambda x: resize_images(x, size)).prefetch(tf.data.AUTOTUNE)
    return np.asarray(teacher.predict(ds, verbose=0), dtype=np.float32)


def _encode(logits, top_k, dtype):
    if top_k is None:
        return {"logits": logits.astype(dtype)}
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    values, indices = tf.math.top_k(log_probs, k=top_k)
    index_dtype = np.int16 if logits.shape[-1] <= np.iinfo(np.int16).max else np.int32
    return {"values": values.numpy().astype(dtype), "indices": indices.numpy().astype(index_dtype)}


def _write(path, meta, arrays):
    folder = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".teacher-cache-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {name: f[name] for name in f.files if name != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a readable teacher cache ({e}); delete it and build "
                         "it again with tfkd.TeacherCache.build.") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} has cache format {meta.get('format')}, this tfkd reads "
                         f"{_FORMAT}; delete it and build it again.")
    return TeacherCache(path, meta, arrays)


def _difference(old, new):
    what = {"teacher_hash": "the teacher changed", "data_hash": "the data changed",
            "teacher_size": "the teacher's input size changed", "top_k": "top_k changed",
            "dtype": "dtype changed"}
    changed = [text for field, text in what.items() if old.get(field) != new.get(field)]
    return ", ".join(changed) or "the key changed"


def _hash_json(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _say(verbose, message):
    if verbose:
        print(message, flush=True)
