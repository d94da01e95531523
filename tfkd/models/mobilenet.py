"""MobileNetV3 Small and Large from keras.applications.

keras.applications builds these offline with `weights=None` and `include_preprocessing=True`
(raw 0..255 pixels are rescaled inside the graph); inputs must be at least 32x32.
"""

import keras

from tfkd.models._options import check_options

FAMILY = "mobilenet"
KIND = "cnn"
MIN_IMAGE_SIZE = 32

VARIANTS = {
    "mobilenetv3_small": {"builder": keras.applications.MobileNetV3Small},
    "mobilenetv3_large": {"builder": keras.applications.MobileNetV3Large},
}

_OPTIONS = ("alpha", "minimalistic", "dropout_rate")


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
