"""EfficientNet (B0-B3) and EfficientNetV2-B0 from keras.applications.

keras.applications builds these offline with `weights=None`, rescales raw 0..255 pixels inside
the graph, and needs inputs of at least 32x32. ImageNet weights: see `tfkd.models.imagenet`.
"""

import keras
import numpy as np

# The weight files' names, URLs and hashes are Keras's own (keras is pinned to 3.15.*).
from keras.src.applications import efficientnet as _v1
from keras.src.applications import efficientnet_v2 as _v2

from tfkd.models._options import check_options

FAMILY = "efficientnet"
KIND = "cnn"
MIN_IMAGE_SIZE = 32
# Feature stages: the last layer of each `blockN` group (its residual add or projection BN),
# the deepest one per spatial size.
STAGES = r"^(block\d+)[a-z]_"
STAGES_PER_RESOLUTION = True

# "imagenet": (Keras's module, the file name's stem, the key of its hash table).
VARIANTS = {
    "efficientnet_b0": {"builder": keras.applications.EfficientNetB0,
                        "imagenet": (_v1, "efficientnetb0", "b0")},
    "efficientnet_b1": {"builder": keras.applications.EfficientNetB1,
                        "imagenet": (_v1, "efficientnetb1", "b1")},
    "efficientnet_b2": {"builder": keras.applications.EfficientNetB2,
                        "imagenet": (_v1, "efficientnetb2", "b2")},
    "efficientnet_b3": {"builder": keras.applications.EfficientNetB3,
                        "imagenet": (_v1, "efficientnetb3", "b3")},
    "efficientnetv2_b0": {"builder": keras.applications.EfficientNetV2B0,
                          "imagenet": (_v2, "efficientnetv2-b0", "b0")},
}

_OPTIONS = ("dropout_rate",)
# What `tfkd.models.freeze_backbone` leaves trainable.
HEAD_LAYERS = ("predictions",)


def build(name, *, image_size, num_classes, **options):
    """Builds an EfficientNet classifier with random weights that outputs logits.

    Args:
        name: a key of `VARIANTS`.
        image_size: (height, width) of the input.
        num_classes: size of the classification head.
        **options: `dropout_rate` (float, default: keras.applications' value).

    Returns:
        A functional `keras.Model` named `name` taking (H, W, 3) pixels in 0..255.
    """
    check_options(name, options, _OPTIONS)
    kwargs = {}
    if "dropout_rate" in options:
        kwargs["dropout_rate"] = float(options["dropout_rate"])
    model = VARIANTS[name]["builder"](
        include_top=True,
        weights=None,
        input_shape=(*image_size, 3),
        classes=num_classes,
        classifier_activation=None,
        **kwargs,
    )
    # EfficientNetV2 looks its block configuration up by `name`, so rename afterwards.
    return keras.Model(model.inputs, model.outputs, name=name)


def backbone(name, *, image_size, **options):
    """The architecture of `build` without its head (what the ImageNet "notop" file holds)."""
    check_options(name, options, _OPTIONS)
    return VARIANTS[name]["builder"](include_top=False, weights=None,
                                     input_shape=(*image_size, 3))


def imagenet_file(name, **options):
    """(file name, URL, sha256) of the ImageNet backbone file keras.applications downloads."""
    check_options(name, options, _OPTIONS)
    module, stem, key = VARIANTS[name]["imagenet"]
    file_name = f"{stem}_notop.h5"
    return file_name, module.BASE_WEIGHTS_PATH + file_name, module.WEIGHTS_HASHES[key][1]


def after_imagenet(name, model):
    """Gives a model with ImageNet weights the input scaling Keras gives it.

    With weights="imagenet", keras.applications' EfficientNet (B0-B7, not V2) adds a Rescaling
    by 1/sqrt(stddev) after its Normalization layer, to match the original implementation's
    preprocessing (tensorflow/tensorflow#49930). That layer only exists when Keras downloads the
    file itself; here the same factor is folded into the Normalization variance, so the model
    computes what Keras's would with one architecture for every `weights`.
    """
    if VARIANTS[name]["imagenet"][0] is not _v1:
        return
    norm = next(layer for layer in model.layers
                if isinstance(layer, keras.layers.Normalization))
    mean, variance, count = norm.get_weights()
    # (x - m) / sqrt(v) / sqrt(s) == (x - m) / sqrt(v * s)
    stddev = np.asarray(_v1.IMAGENET_STDDEV_RGB, dtype=variance.dtype).reshape(variance.shape)
    norm.set_weights([mean, variance * stddev, count])
    norm.finalize_state()  # Normalization computes from a copy of its weights made here
