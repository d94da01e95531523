"""What the KD benchmarks share: the models and batch of the recipes' default setup, and
compiled Keras steps timed without `fit`'s per-call overhead.

The default setup is the resolution sweep's smallest run: teacher `convnet_m` at 28x28 (the
data's own size), student `mobilenetv3_small` at 32x32, batches of 128 real Fashion-MNIST
images (0..255 pixels, as every tfkd model takes them).
"""

import keras
import numpy as np
import tensorflow as tf

import tfkd

TEACHER, TEACHER_SIZE = "convnet_m", 28
STUDENT, STUDENT_SIZE = "mobilenetv3_small", 32
BATCH = 128


def fashion_batch(batch_size=BATCH, size=28, offset=0):
    """(images uint8 (B, size, size, 3), labels int32 (B,)): real training images."""
    ds = tfkd.data.load("fashion_mnist", "train", image_size=size, batch_size=batch_size,
                        limit=offset + batch_size, shuffle=False)
    x, y = next(iter(ds.skip(offset // batch_size)))
    return x.numpy(), y.numpy()


def make_models(teacher_size=TEACHER_SIZE, student_size=STUDENT_SIZE, seed=0):
    """(teacher, student) with fixed initial weights; latency does not depend on training."""
    keras.utils.set_random_seed(seed)
    teacher = tfkd.create_model(TEACHER, image_size=teacher_size, num_classes=10)
    student = tfkd.create_model(STUDENT, image_size=student_size, num_classes=10)
    return teacher, student


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def steps(model, kind, data, count):
    """A callable that runs `count` compiled steps of `model` ("train" or "predict") on `data`
    (a tuple of arrays, repeated) and waits for the result.

    It calls the functions `fit` and `predict` build (`make_train_function`,
    `make_predict_function`), so every candidate pays the per-step dispatch `fit` pays and none
    pays `fit`'s per-call set-up. The predict side gets its batch as a tensor (no iterator):
    if anything, that makes the floor cheaper and a ratio against it stricter.
    """
    if kind == "train":
        model.make_train_function()
        iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
        fn = lambda: model.train_function(iterator)  # noqa: E731
    else:
        # Keras's predict function takes a list of batches rather than an iterator.
        model.make_predict_function()
        batch = [tuple(tf.constant(a) for a in data)]
        fn = lambda: model.predict_function(batch)  # noqa: E731

    def run():
        out = None
        for _ in range(count):
            out = fn()
        # Block until the last step has finished: fetch one number of its outputs.
        first = tf.nest.flatten(out.get_value() if hasattr(out, "get_value") else out)[0]
        np.asarray(first)

    return run


def resized(images, size):
    """The batch resized exactly as the Distiller resizes it inside its step."""
    return tfkd.distiller.resize_images(images, (size, size)).numpy()
