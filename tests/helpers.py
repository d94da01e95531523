"""Small models and batches shared by the tests."""

import keras
import numpy as np
from keras import layers


def tiny_cnn(image_size, num_classes=3, *, batch_norm=True, name="tiny_cnn", activation=None):
    """A two-layer CNN taking raw 0..255 pixels: fast enough for many tests."""
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    x = layers.Conv2D(4, 3, strides=2, padding="same")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation=activation)(x)
    return keras.Model(inputs, outputs, name=name)


def batch(image_size, n=8, num_classes=3, seed=0):
    """Random uint8 images and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, image_size, image_size, 3)).astype("uint8")
    y = rng.integers(0, num_classes, n).astype("int32")
    return x, y
