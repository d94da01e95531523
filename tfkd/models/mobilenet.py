"""MobileNetV3 Small and Large from keras.applications.

keras.applications builds these offline with `weights=None` and `include_preprocessing=True`
(raw 0..255 pixels are rescaled inside the graph); inputs must be at least 32x32. ImageNet
weights: see `tfkd.models.imagenet`.
"""

import keras

# The weight files' names, URLs and hashes are Keras's own (keras is pinned to 3.15.*).
from keras.src.applications import mobilenet_v3 as _keras_mobilenet_v3

from tfkd.models._options import check_options

FAMILY = "mobilenet"
KIND = "cnn"
MIN_IMAGE_SIZE = 32
# Feature stages: the output of each `expanded_conv` block, the deepest one per spatial size.
STAGES = r"^(expanded_conv(?:_\d+)?)_"
STAGES_PER_RESOLUTION = True

VARIANTS = {
    "mobilenetv3_small": {"builder": keras.applications.MobileNetV3Small, "type": "small"},
    "mobilenetv3_large": {"builder": keras.applications.MobileNetV3Large, "type": "large"},
}

_OPTIONS = ("alpha", "minimalistic", "dropout_rate")
# What `tfkd.models.freeze_backbone` leaves trainable: the notop ImageNet file has neither.
HEAD_LAYERS = ("conv_2", "logits")


def build(name, *, image_size, num_classes, **options):
    """Builds a MobileNetV3 classifier with random weights that outputs logits.

    Args:
        name: a key of `VARIANTS`.
        image_size: (height, width) of the input.
        num_classes: size of the classification head.
        **options: `alpha` (width multiplier, default 1.0), `minimalistic` (bool, default
            False), `dropout_rate` (default 0.2).

    Returns:
        A functional `keras.Model` named `name` taking (H, W, 3) pixels in 0..255.
    """
    check_options(name, options, _OPTIONS)
    return VARIANTS[name]["builder"](
        input_shape=(*image_size, 3),
        include_top=True,
        weights=None,
        classes=num_classes,
        classifier_activation=None,
        include_preprocessing=True,
        name=name,
        **options,
    )


def backbone(name, *, image_size, **options):
    """The architecture of `build` without its head (what the ImageNet "no_top" file holds)."""
    check_options(name, options, _OPTIONS)
    options.pop("dropout_rate", None)  # the head's only
    return VARIANTS[name]["builder"](input_shape=(*image_size, 3), include_top=False,
                                     weights=None, include_preprocessing=True, **options)


def imagenet_file(name, *, alpha=1.0, minimalistic=False, dropout_rate=None):
    """(file name, URL, sha256) of the ImageNet backbone file keras.applications downloads."""
    del dropout_rate  # the head's only
    kind = VARIANTS[name]["type"]
    key = f"{kind}{'_minimalistic' if minimalistic else ''}_224_{float(alpha)}_float"
    hashes = _keras_mobilenet_v3.WEIGHTS_HASHES
    if key not in hashes:
        have = sorted({k.split("_224_")[1].split("_")[0] for k in hashes
                       if k.startswith(kind) and ("minimalistic" in k) == bool(minimalistic)})
        raise ValueError(f"Keras has no ImageNet weights for {name} with alpha={alpha}"
                         f"{' minimalistic=True' if minimalistic else ''}; it has them for "
                         f"alpha in {have}. Pass one of those, or weights=None.")
    file_name = f"weights_mobilenet_v3_{key}_no_top_v2.h5"
    return file_name, _keras_mobilenet_v3.BASE_WEIGHT_PATH + file_name, hashes[key][1]
