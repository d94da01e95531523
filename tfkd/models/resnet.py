"""CIFAR-style ResNets (He et al., 2016, section 4.2): the classic small-image KD teachers.

Three stages of basic residual blocks at widths (16, 32, 64) times a width multiplier, with
`n` blocks per stage (depth 6n + 2). The KD literature (CRD, DKD) uses them as teachers and
students on 32x32 images; on a CPU they are the fastest way to a teacher that clearly beats
MobileNetV3 students on Fashion-MNIST. Built only from built-in Keras layers, so a saved
`.keras` file loads without tfkd.
"""

import keras
from keras import layers

from tfkd.models._options import check_options

FAMILY = "resnet"
KIND = "cnn"
MIN_IMAGE_SIZE = 8  # two stride-2 stages leave a 2x2 map

VARIANTS = {
    "resnet20": {"blocks": 3, "width": 1},
    "resnet56": {"blocks": 9, "width": 1},
    "resnet20x4": {"blocks": 3, "width": 4},
}

_OPTIONS = ()
_WEIGHT_DECAY = 5e-5


def _conv_bn(x, filters, strides, name, relu=True):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal",
                      kernel_regularizer=keras.regularizers.L2(_WEIGHT_DECAY),
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn(x, filters, strides, f"{name}_1")
    y = _conv_bn(y, filters, 1, f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        # Projection shortcut (option B of the paper) where the shape changes.
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                 name=f"{name}_proj_conv")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def build(name, *, image_size, num_classes, **options):
    """Builds a CIFAR-style ResNet with random weights that outputs logits.

    Args:
        name: a key of `VARIANTS`.
        image_size: (height, width) of the input.
        num_classes: size of the classification head.
        **options: none are accepted.

    Returns:
        A functional `keras.Model` named `name` taking (H, W, 3) pixels in 0..255.
    """
    check_options(name, options, _OPTIONS)
    spec = VARIANTS[name]
    inputs = keras.Input((*image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = _conv_bn(x, 16 * spec["width"], 1, "stem")
    for stage, width in enumerate((16, 32, 64)):
        for i in range(spec["blocks"]):
            strides = 2 if stage > 0 and i == 0 else 1
            x = _block(x, width * spec["width"], strides, f"stage{stage + 1}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
