"""The model zoo: one file per family, one table of families, one `create_model`.

Every model takes raw RGB pixels (0..255, any float or integer dtype) of a fixed size, normalizes
them inside the graph and returns logits. Family files are imported when first used, so
`import tfkd` stays fast and a family with a heavy dependency costs nothing until asked for.
"""

import difflib
import functools
import importlib
import os
import warnings
import zipfile

import keras

from tfkd.models import hub, imagenet
from tfkd.models.batch_norm import recalibrate_batch_norm  # noqa: F401 - public
from tfkd.models.dropout import with_saved_dropout_state  # noqa: F401 - public
from tfkd.models.finetune import all_layers, freeze_backbone, freeze_batch_norm  # noqa: F401

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
                     f"{list_models()} (tfkd.models.list_models() lists them), or a keras-hub "
                     "preset as 'hub:PRESET' (tfkd.models.list_models('hub')).")


def did_you_mean(name):
    """"did you mean 'a'?" (or "'a' or 'b'") for the zoo's names closest to `name`, or ""."""
    close = [repr(c) for c in difflib.get_close_matches(str(name).lower(), list_models(), n=2,
                                                         cutoff=0.75)]
    return f"did you mean {' or '.join(close)}?" if close else ""


def list_models(family=None):
    """Names of every model in the zoo, optionally of one family ("mobilevit") or kind ("cnn").

    Pretrained models come from two places. `create_model(name, weights="imagenet")` gives the
    keras.applications families (efficientnet, mobilenet) their ImageNet backbones, and
    `list_models("hub")` lists keras-hub's image classifier presets as "hub:PRESET" names
    (ViT, DeiT, EfficientNet, MobileNetV3, ResNet, ...; needs `pip install 'tfkd[hub]'`); a
    local keras-hub preset folder is "hub:/path/to/folder".

    Args:
        family: None for all zoo models, a family name from `FAMILIES`, a kind ("cnn",
            "vit"), or "hub" for keras-hub's presets.

    Returns:
        A list of model names, in family-table order.
    """
    if family == hub.FAMILY:
        return hub.list_presets()
    if family is not None and family not in FAMILIES and family not in ("cnn", "vit"):
        raise ValueError(f"Unknown family {family!r}; choose one of {list(FAMILIES)}, "
                         "a kind: 'cnn', 'vit', or 'hub' for keras-hub presets.")
    names = []
    for family_name in FAMILIES:
        module = _family(family_name)
        if family in (None, family_name, module.KIND):
            names.extend(module.VARIANTS)
    return names


def min_image_size(name):
    """The smallest input side `name` accepts (no model is built)."""
    if hub.is_hub(name):
        return hub.min_image_size(name)
    return _family_of(name).MIN_IMAGE_SIZE


def family_and_kind(name):
    """(family, kind) of a model name, without building it: ("mobilenet", "cnn").

    Given a built `keras.Model` instead (a teacher loaded from a file, say): the zoo's answer
    for a zoo model's name, ("hub", kind) for a keras-hub model, else ("model", "vit") when
    it has attention layers and ("model", "cnn") when not.
    """
    if isinstance(name, keras.Model):
        return _family_and_kind_of_model(name)
    if hub.is_hub(name):
        return hub.FAMILY, hub.describe_preset(name)["kind"]
    module = _family_of(name)
    return module.FAMILY, module.KIND


def _family_and_kind_of_model(model):
    if model.name in list_models():
        return family_and_kind(model.name)
    layers = list(all_layers(model))
    classifier = next((layer for layer in layers if hasattr(layer, "backbone")), None)
    if classifier is not None:
        return hub.FAMILY, hub.kind_of_backbone(type(classifier.backbone).__name__)
    attends = any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in layers)
    return "model", "vit" if attends else "cnn"


def stage_pattern(model):
    """(regex, per_resolution) naming `model`'s feature stages, for a zoo model; else None.

    A family file's `STAGES` regex groups layer names into blocks (its first group is the
    block); the last layer of each block is a stage output. With `STAGES_PER_RESOLUTION` only
    the deepest block at each spatial size is kept (keras.applications' many small blocks).
    """
    if model.name not in list_models():
        return None
    module = _family_of(model.name)
    return module.STAGES, getattr(module, "STAGES_PER_RESOLUTION", False)


def pretrained_models():
    """The zoo models that `weights="imagenet"` works for (keras.applications families)."""
    return [n for n in list_models() if hasattr(_family_of(n), "imagenet_file")]


def imagenet_file(name, **options):
    """(file name, URL, sha256) of the ImageNet backbone file Keras downloads for `name` (with
    these options): what to fetch on a machine with a network for `weights=PATH` offline."""
    module = _family_of(name)
    if not hasattr(module, "imagenet_file"):
        raise ValueError(f"{name} has no ImageNet weights; these do: {pretrained_models()}.")
    return module.imagenet_file(name, **options)


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
    for layer in all_layers(model):  # nested models (keras-hub classifiers) too
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def create_model(name, *, image_size, num_classes, weights=None,
                 bn_momentum=DEFAULT_BN_MOMENTUM, **options):
    """Builds a model that takes raw 0..255 RGB pixels and returns logits.

    Args:
        name: a name from `list_models()`, e.g. "mobilenetv3_small", or "hub:PRESET" for a
            keras-hub preset (a name from `list_models("hub")` or a preset folder), which
            starts from the preset's own weights (see `tfkd.models.hub`).
        image_size: input side as an int, or a (height, width) pair.
        num_classes: number of output logits.
        weights: None for random initialization (a hub preset: its own weights); "imagenet"
            for the ImageNet backbone of a keras.applications family (`pretrained_models()`),
            downloaded by Keras into its cache, under a fresh head; the path of that backbone
            file as Keras downloads it (e.g. efficientnetb0_notop.h5), for machines without a
            network; or the path of a `.weights.h5` file saved from the same architecture
            (`model.save_weights`).
        bn_momentum: momentum of every BatchNormalization layer (see `DEFAULT_BN_MOMENTUM`).
        **options: family-specific options, e.g. `patch_size` for ViTs, `alpha` for
            MobileNetV3; an unknown option raises a ValueError listing the accepted ones.

    Returns:
        A functional `keras.Model` (named `name`, or after the preset for hub models).
    """
    if hub.is_hub(name):
        model = _create_hub_model(name, image_size, num_classes, weights, options)
    else:
        module = _family_of(name)
        size = _image_size(name, image_size, module.MIN_IMAGE_SIZE)
        _check_num_classes(num_classes)
        model = module.build(name, image_size=size, num_classes=num_classes, **options)
        if weights == "imagenet" or _is_backbone_file(weights):
            if not hasattr(module, "imagenet_file"):
                raise ValueError(
                    f"{name} has no ImageNet weights in keras.applications; these do: "
                    f"{pretrained_models()}. Other pretrained models: keras-hub presets, "
                    "create_model('hub:PRESET', ...) (tfkd.models.list_models('hub')).")
            imagenet.load(model, module, name, size, options, weights)
        elif weights is not None:
            _load_weights(model, weights)
    if bn_momentum is not None:
        _set_bn_momentum(model, float(bn_momentum))
    return model


def _create_hub_model(name, image_size, num_classes, weights, options):
    if options:
        raise ValueError(f"{name} takes no options (got {sorted(options)}); a keras-hub "
                         "preset fixes its architecture.")
    if weights == "imagenet" or _is_backbone_file(weights):
        raise ValueError(f"{name}: a keras-hub preset comes with its own weights; drop "
                         "weights= (or pass a .weights.h5 saved from this model).")
    size = _image_size(name, image_size, hub.min_image_size(name))
    _check_num_classes(num_classes)
    model = hub.build(name, image_size=size, num_classes=num_classes)
    if weights is not None:
        _load_weights(model, weights)
    return model


def _check_num_classes(num_classes):
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")


def _is_backbone_file(weights):
    """A legacy .h5 file, as keras.applications downloads (not a .weights.h5 of a tfkd model)."""
    path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else ""
    return path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")


def _load_weights(model, weights):
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet' or the path of a weights file, "
                         f"got {weights!r}.")
    path = os.fspath(weights)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weights={path!r}: expected 'imagenet', an ImageNet backbone file "
                         "as Keras downloads it (.h5), or a '.weights.h5' file written by "
                         "model.save_weights().")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    try:
        model.load_weights(path)
    except ValueError as err:
        raise ValueError(f"weights file {path!r} does not match {model.name} with this "
                         f"image_size/num_classes/options: {err}") from err


def load_model(path):
    """Loads a `.keras` model or Distiller saved by tfkd, with `safe_mode=True`.

    Keras rebuilds a model from the classes its file names, so they must be registered first:
    this imports tfkd's layers (ViT, MobileViT, dropout) and, for a model built from a
    keras-hub preset, keras-hub.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}.")
    for family_name in FAMILIES:
        _family(family_name)
    if _mentions_keras_hub(path):
        hub.keras_hub()
    with warnings.catch_warnings():
        # keras-hub classifiers compile themselves in __init__ with a custom compile(), and
        # Keras warns on every load that it cannot restore that: nothing is lost.
        warnings.filterwarnings("ignore", message=r"`compile\(\)` was not called")
        return keras.saving.load_model(path, safe_mode=True)


def _mentions_keras_hub(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        config = archive.read("config.json") if "config.json" in names else b""
    return b"keras_hub" in config


def describe(name, *, image_size=224, num_classes=1000):
    """Family, kind and parameter count of a model (a hub preset is loaded to count them).

    Args:
        name: a name from `list_models()`, or "hub:PRESET".
        image_size: input side the parameters are counted at (matters for ViTs only).
        num_classes: head size the parameters are counted at.

    Returns:
        A dict with keys name, family, kind ("cnn" or "vit"), min_image_size, params; a hub
        preset adds backbone (its keras-hub class) and fixed_size (the side its input is
        resized to inside the graph, or None).
    """
    family, kind = family_and_kind(name)
    info = {"name": name, "family": family, "kind": kind,
            "min_image_size": min_image_size(name),
            "params": _count_params(name, image_size, num_classes)}
    if hub.is_hub(name):
        preset = hub.describe_preset(name)
        info.update(backbone=preset["backbone"], fixed_size=preset["fixed_size"])
    return info


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
