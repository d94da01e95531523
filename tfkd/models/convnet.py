"""Plain VGG-style CNNs: the fast small-image teachers.

Three stages of two 3x3 conv-BN-ReLU layers and a 2x2 max-pool, at widths (w, 2w, 4w), then
global average pooling and a linear head. The KD literature uses such VGG nets as CIFAR
teachers (CRD's vgg13 -> vgg8); on a CPU they are the quickest route to a teacher that clearly
beats MobileNetV3 students: `convnet_m` reached 0.90 on Fashion-MNIST at 28x28 after two
epochs on 30k images (about a minute on 2 cores). Only built-in Keras layers, so a saved
`.keras` file loads without tfkd.
"""

import keras
from keras import layers

from tfkd.models._options import check_options

FAMILY = "convnet"
KIND = "cnn"
MIN_IMAGE_SIZE = 8  # three 2x2 pools leave a 1x1 map
# Feature stages (`tfkd.features.stage_outputs`): the last layer of each `stageN_` group, the
# pool that ends it excluded.
STAGES = r"^(stage\d+)_(?!pool)"

VARIANTS = {
    "convnet_s": {"width": 16},
    "convnet_m": {"width": 32},
    "convnet_l": {"width": 64},
}

_OPTIONS = ("dropout_rate",)


def _conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build(name, *, image_size, num_classes, **options):
    """Builds a VGG-style CNN with random weights that outputs logits.

    Args:
        name: a key of `VARIANTS`.
        image_size: (height, width) of the input.
        num_classes: size of the classification head.
        **options: `dropout_rate` before the head (default 0.2).

    Returns:
        A functional `keras.Model` named `name` taking (H, W, 3) pixels in 0..255.
    """
    check_options(name, options, _OPTIONS)
    width = VARIANTS[name]["width"]
    inputs = keras.Input((*image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = _conv_bn_relu(x, filters, f"stage{stage}_a")
        x = _conv_bn_relu(x, filters, f"stage{stage}_b")
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(float(options.get("dropout_rate", 0.2)), name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
