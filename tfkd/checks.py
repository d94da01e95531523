"""What the Distiller and the teacher cache check about models and labels, before training.

Every check ends in a message that says what to do: a wrong model or label is the user's to
fix, and TensorFlow's own errors for them come from deep inside a traced graph.
"""

import contextlib
import re

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Marks the label assertion's message, so the error can be recognized and rewritten.
_LABEL_MARK = "tfkd-label-out-of-range"


def check_classifier(model, role):
    """((height, width), classes) of `model`, checked: a single-input `keras.Model` with a fixed
    input size that outputs (batch, classes) logits, not probabilities.

    Raises:
        TypeError: not a `keras.Model`.
        ValueError: with what to do, for a free input size, another output shape or a softmax
            (a Softmax layer or activation, or outputs that are probabilities on a sample batch:
            a softmax inside a Lambda layer or a raw op).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"The {role} must be a keras.Model, got {type(model).__name__}.")
    size = _fixed_input_size(model, role)
    classes = _num_classes(model, role)
    _check_logits(model, role, size, classes)
    return size, classes


def _fixed_input_size(model, role):
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        raise ValueError(f"The {role} has {len(shape)} inputs; tfkd distills single-input "
                         "image classifiers.")
    if shape is None or len(shape) != 4 or None in shape[1:3]:
        raise ValueError(f"The {role} {model.name!r} has no fixed input size (input shape "
                         f"{shape}); build it with keras.Input(shape=(height, width, 3)), e.g. "
                         "tfkd.create_model(name, image_size=..., num_classes=...).")
    return tuple(int(v) for v in shape[1:3])


def _num_classes(model, role):
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2 or shape[-1] is None:
        raise ValueError(f"The {role} {model.name!r} must output (batch, classes) logits, but "
                         f"its output shape is {shape}.")
    return int(shape[-1])


def _applies_softmax(model):
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") in (
        "softmax", "log_softmax")


def _check_logits(model, role, size, classes):
    # Softmax outputs would be softened a second time by the temperature and KL would be taken
    # between near-uniform distributions: training runs but the student learns little. Refuse
    # early rather than guess (taking the log of probabilities would hide a wrong model).
    fix = ("Rebuild it without the softmax (keras.applications: classifier_activation=None; "
           "Dense: activation=None), or wrap it: keras.Model(model.input, "
           "model.layers[-1].input) when the softmax is a separate layer.")
    if _applies_softmax(model):
        raise ValueError(f"The {role} {model.name!r} ends in a softmax; tfkd needs logits. {fix}")
    found = _normalized_outputs(model, size, classes)
    if found:
        raise ValueError(f"The {role} {model.name!r} outputs {found} on a sample batch (every "
                         "row), so a softmax is probably applied inside a Lambda layer or a raw "
                         f"op; tfkd needs logits. {fix}")


def _normalized_outputs(model, size, classes):
    """"probabilities" or "log-probabilities" when `model`'s outputs on two random images are
    (each row in [0, 1] summing to 1, or <= 0 with logsumexp 0), else None.

    Logits of any real classifier, trained or not, are neither to four decimals.
    """
    if classes < 2:
        return None
    images = np.random.default_rng(0).uniform(0, 255, (2, *size, 3)).astype("float32")
    out = np.asarray(ops.convert_to_numpy(model(images, training=False)), dtype="float64")
    if not np.all(np.isfinite(out)):
        return None
    if out.min() >= 0 and out.max() <= 1 and np.allclose(out.sum(-1), 1, atol=1e-4):
        return "probabilities"
    lse = np.log(np.exp(out - out.max(-1, keepdims=True)).sum(-1)) + out.max(-1)
    if out.max() <= 0 and np.allclose(lse, 0, atol=1e-4):
        return "log-probabilities"
    return None


def checked_labels(labels, classes):
    """`labels`, with an assertion (in the graph) that sparse labels lie in [0, classes).

    One-hot (or soft) labels of shape (batch, classes) pass unchecked. The assertion costs a
    comparison per label; `label_errors` turns its failure into a `ValueError`.
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) >= 2 and labels.shape[-1] == classes and classes > 1:
        return labels
    flat = tf.reshape(tf.cast(labels, tf.int64), [-1])
    bad = tf.where((flat < 0) | (flat >= classes))[:, 0]
    first = tf.concat([bad, [-1]], axis=0)[0]
    label = tf.concat([tf.gather(flat, bad), [-1]], axis=0)[0]
    check = tf.debugging.Assert(tf.size(bad) == 0, [_LABEL_MARK, "label", label, "position",
                                                    first, "count", tf.size(bad)])
    with tf.control_dependencies([check]):
        return tf.identity(labels)


@contextlib.contextmanager
def label_errors(classes):
    """Turns the assertion of `checked_labels` into a ValueError that names the label."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(rf"{_LABEL_MARK}.*?label\]? \[?(-?\d+)\]? \[?position\]? \[?(\d+)\]?"
                          r" \[?count\]? \[?(\d+)", str(error), re.S)
        if not found:
            raise
        label, position, count = (int(v) for v in found.groups())
        more = f" (and {count - 1} more in that batch)" if count > 1 else ""
        if label == classes:
            fix = f"labels look 1-based; class indices run from 0 to {classes - 1}: subtract 1"
        elif label < 0:
            fix = f"class indices run from 0 to {classes - 1}; drop or fix negative labels"
        else:
            fix = ("the data has more classes than the models: build them with "
                   "num_classes= the dataset's class count")
        raise ValueError(f"label {label} at position {position} of a batch{more} is outside "
                         f"[0, {classes}): the models have {classes} classes; {fix}.") from None
