"""EfficientNet (B0-B3) and EfficientNetV2-B0 from keras.applications.

keras.applications builds these offline with `weights=None`, rescales raw 0..255 pixels inside
the graph, and needs inputs of at least 32x32.
"""

import keras

from tfkd.models._options import check_options

FAMILY = "efficientnet"
KIND = "cnn"
MIN_IMAGE_SIZE = 32

VARIANTS = {
    "efficientnet_b0": {"builder": keras.applications.EfficientNetB0},
    "efficientnet_b1": {"builder": keras.applications.EfficientNetB1},
    "efficientnet_b2": {"builder": keras.applications.EfficientNetB2},
    "efficientnet_b3": {"builder": keras.applications.EfficientNetB3},
    "efficientnetv2_b0": {"builder": keras.applications.EfficientNetV2B0},
}

_OPTIONS = ("dropout_rate",)


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
