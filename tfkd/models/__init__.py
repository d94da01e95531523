"""The model zoo: one file per family, one table of families, one `create_model`.

Every model takes raw RGB pixels (0..255, any float or integer dtype) of a fixed size, normalizes
them inside the graph and returns logits. Family files are imported when first used, so
`import tfkd` stays fast and a family with a heavy dependency costs nothing until asked for.
"""

import difflib
import functools
import importlib
import os

import keras

from tfkd.models.dropout import with_saved_dropout_state  # noqa: F401 - public

# The family table. A new family is one file in this folder plus one name here.
FAMILIES = ("convnet", "efficientnet", "mobilenet", "mobilevit", "vit")

# keras.applications uses BatchNormalization momentum 0.99-0.999. On the short schedules of a
# CPU (a few thousand steps) the moving statistics then stay near their initial values and the
# model scores at chance in inference mode although its training loss is low. 0.9 tracks the
# data within ~50 steps and costs nothing on long schedules.
DEFAULT_BN_MOMENTUM = 0.9


def _family(family_name):
    return importlib.import_module(f"tfkd.models.{family_name}")


def _family_of(name):
    for family_name in FAMILIES:
        if name in _family(family_name).VARIANTS:
            return _family(family_name)
    hint = did_you_mean(name)
    raise ValueError(f"Unknown model {name!r}; {hint + ' Choose' if hint else 'choose'} one of "
                     f"{list_models()} (tfkd.models.list_models() lists them).")


def did_you_mean(name):
    """"did you mean 'a'?" (or "'a' or 'b'") for the zoo's names closest to `name`, or ""."""
    close = [repr(c) for c in difflib.get_close_matches(str(name).lower(), list_models(), n=2,
                                                         cutoff=0.75)]
    return f"did you mean {' or '.join(close)}?" if close else ""


def list_models(family=None):
    """Names of every model in the zoo, optionally of one family ("mobilevit") or kind ("cnn").

    Args:
        family: None for all models, a family name from `FAMILIES`, or a kind ("cnn", "vit").

    Returns:
        A list of model names, in family-table order.
    """
    if family is not None and family not in FAMILIES and family not in ("cnn", "vit"):
        raise ValueError(f"Unknown family {family!r}; choose one of {list(FAMILIES)} "
                         "or a kind: 'cnn', 'vit'.")
    names = []
    for family_name in FAMILIES:
        module = _family(family_name)
        if family in (None, family_name, module.KIND):
            names.extend(module.VARIANTS)
    return names


def min_image_size(name):
    """The smallest input side `name` accepts (no model is built)."""
    return _family_of(name).MIN_IMAGE_SIZE


def _image_size(name, image_size, min_size):
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    elif (isinstance(image_size, (tuple, list)) and len(image_size) == 2
          and all(isinstance(v, int) for v in image_size)):
        size = tuple(image_size)
    else:
        raise ValueError(f"image_size must be an int or a (height, width) pair of ints, "
                         f"got {image_size!r}.")
    if min(size) < min_size:
        raise ValueError(f"{name} needs images of at least {min_size}x{min_size}, got "
                         f"{size[0]}x{size[1]}; pass image_size={min_size} or larger.")
    return size


def _set_bn_momentum(model, momentum):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
        elif hasattr(layer, "layers"):  # a nested model
            _set_bn_momentum(layer, momentum)


def create_model(name, *, image_size, num_classes, weights=None,
                 bn_momentum=DEFAULT_BN_MOMENTUM, **options):
    """Builds a zoo model that takes raw 0..255 RGB pixels and returns logits.

    Args:
        name: a name from `list_models()`, e.g. "mobilenetv3_small".
        image_size: input side as an int, or a (height, width) pair.
        num_classes: number of output logits.
        weights: None for random initialization, or the path of a `.weights.h5` file saved
            from the same architecture (`model.save_weights`).
        bn_momentum: momentum of every BatchNormalization layer (see `DEFAULT_BN_MOMENTUM`).
        **options: family-specific options, e.g. `patch_size` for ViTs, `alpha` for
            MobileNetV3; an unknown option raises a ValueError listing the accepted ones.

    Returns:
        A functional `keras.Model` named `name`.
    """
    module = _family_of(name)
    size = _image_size(name, image_size, module.MIN_IMAGE_SIZE)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    model = module.build(name, image_size=size, num_classes=num_classes, **options)
    if bn_momentum is not None:
        _set_bn_momentum(model, float(bn_momentum))
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model, weights):
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None or the path of a .weights.h5 file, got "
                         f"{weights!r}.")
    path = os.fspath(weights)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weights={path!r}: expected a '.weights.h5' file written by "
                         "model.save_weights(); pretrained presets such as 'imagenet' are not "
                         "bundled with tfkd.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    try:
        model.load_weights(path)
    except ValueError as err:
        raise ValueError(f"weights file {path!r} does not match {model.name} with this "
                         f"image_size/num_classes/options: {err}") from err


def describe(name, *, image_size=224, num_classes=1000):
    """Family, kind and parameter count of a zoo model.

    Args:
        name: a name from `list_models()`.
        image_size: input side the parameters are counted at (matters for ViTs only).
        num_classes: head size the parameters are counted at.

    Returns:
        A dict with keys name, family, kind ("cnn" or "vit"), min_image_size, params.
    """
    module = _family_of(name)
    return {"name": name, "family": module.FAMILY, "kind": module.KIND,
            "min_image_size": module.MIN_IMAGE_SIZE,
            "params": _count_params(name, image_size, num_classes)}


@functools.lru_cache(maxsize=None)
def _count_params(name, image_size, num_classes):
    return int(create_model(name, image_size=image_size, num_classes=num_classes).count_params())


def distillation_heads(model):
    """The (class, distillation) logits of a DeiT-style model, or None for any other model.

    Returns:
        A functional `keras.Model` sharing `model`'s weights whose outputs are
        [class_logits, distillation_logits], or None.
    """
    return _family("vit").distillation_heads(model)
