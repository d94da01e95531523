"""keras-hub presets as tfkd models: `create_model("hub:PRESET", image_size=..., num_classes=...)`.

PRESET is a keras-hub preset name (`tfkd.list_models("hub")` lists the image classifiers
keras-hub knows: ViT, DeiT, EfficientNet, MobileNetV3, ResNet, ...; their weights download
from Kaggle into keras-hub's cache) or a local preset folder (`task.save_to_preset(folder)`).

keras-hub classifiers take images of any size and expect them preprocessed by a separate
preprocessor. A tfkd model takes raw 0..255 RGB pixels of one fixed size and returns logits, so
the preset's own image converter (its scale and offset) goes inside the graph, before the
classifier. A backbone that accepts any size (the CNNs) runs at `image_size` itself; one built
for a fixed size (ViT, DeiT: their position embeddings are per patch) gets its input resized
to that size inside the graph, as keras-hub's preprocessor would. The preset's head is kept
when it has `num_classes` classes; otherwise keras-hub puts a fresh one on the pretrained
backbone. Either way the head returns logits (activation=None).

keras-hub is an optional extra (`pip install 'tfkd[hub]'`); nothing here imports it until a
hub model is asked for. A saved hub model loads with `tfkd.models.load_model(path)`, which
imports keras-hub first (its layers must be registered before Keras can rebuild them).
"""

import json
import os
import re

import keras

PREFIX = "hub:"
FAMILY = "hub"
INSTALL = "pip install 'tfkd[hub]' (keras-hub==0.32.*)"
# Backbones that attend over patches: "vit" in tfkd's CNN-vs-ViT vocabulary.
_VIT_BACKBONES = ("ViTBackbone", "DeiTBackbone", "SwinTransformerBackbone", "MiTBackbone",
                  "DINOV2Backbone", "DINOV3Backbone")
# A CNN backbone downsamples by 32; below that its last feature map is empty.
_CNN_MIN_SIZE = 32


def is_hub(name):
    """Whether `name` names a keras-hub preset ("hub:...")."""
    return isinstance(name, str) and name.startswith(PREFIX)


def keras_hub():
    """The keras_hub module, or an ImportError that says how to install it."""
    try:
        import keras_hub as module  # noqa: PLC0415 - an optional extra, imported on demand
    except ImportError as err:
        raise ImportError(f"hub:PRESET models need keras-hub; install it with {INSTALL}.") \
            from err
    return module


def list_presets():
    """The keras-hub image classifier presets, as tfkd model names ("hub:resnet_18_imagenet")."""
    return [PREFIX + p for p in sorted(keras_hub().models.ImageClassifier.presets)]


def preset_of(name):
    """The preset a "hub:PRESET" name points at; a ValueError for an empty one."""
    preset = name[len(PREFIX):]
    if not preset:
        raise ValueError("hub: needs a preset after the colon: a keras-hub preset name "
                         "(tfkd.list_models('hub') lists them) or a preset folder, e.g. "
                         "hub:resnet_18_imagenet or hub:/path/to/saved_preset.")
    return preset


def describe_preset(name):
    """Kind ("cnn"/"vit"), backbone class and fixed input side (None: any) of a preset."""
    config = _read_preset_json(name, "config.json")
    class_name = config.get("class_name", "")
    backbone = config.get("config") or {}
    # Most backbones call their input shape image_shape; keras-hub's EfficientNet input_shape.
    shape = backbone.get("image_shape") or backbone.get("input_shape") or (None, None, 3)
    fixed = None if None in tuple(shape)[:2] else tuple(int(v) for v in shape[:2])
    return {"kind": kind_of_backbone(class_name), "backbone": class_name, "fixed_size": fixed}


def kind_of_backbone(class_name):
    """"vit" for a keras-hub backbone class that attends over patches, else "cnn"."""
    return "vit" if class_name in _VIT_BACKBONES else "cnn"


def min_image_size(name):
    """1 for a fixed-size backbone (its input is resized inside the graph), else 32."""
    return 1 if describe_preset(name)["fixed_size"] else _CNN_MIN_SIZE


def build(name, *, image_size, num_classes):
    """The preset as a tfkd model: raw (H, W, 3) pixels in, `num_classes` logits out.

    Returns:
        A functional `keras.Model`: the preset's image converter, then its classifier.
    """
    hub = keras_hub()
    preset = preset_of(name)
    task_config = _read_preset_json(name, "task.json", required=False) or {}
    own_classes = (task_config.get("config") or {}).get("num_classes")
    kwargs = {"activation": None, "preprocessor": None}
    if own_classes != num_classes:
        kwargs["num_classes"] = num_classes  # keras-hub then loads the backbone weights only
    classifier = _load(name, lambda: hub.models.ImageClassifier.from_preset(preset, **kwargs))
    converter = _converter(name, hub)
    fixed = describe_preset(name)["fixed_size"]
    config, preset_size = converter.get_config(), converter.image_size
    # Resize only where the backbone needs its own size; a CNN runs at image_size.
    config["image_size"] = fixed if fixed and fixed != tuple(image_size) else None
    converter = type(converter).from_config(config)
    inputs = keras.Input(shape=(*image_size, 3), name="image")
    try:
        outputs = classifier(converter(inputs))
    except ValueError as err:  # e.g. VGG's 7x7 head convolution on a too small feature map
        raise ValueError(f"{name} cannot run at image_size={tuple(image_size)}: its layers "
                         f"need larger images (its preset uses {preset_size}); pass "
                         f"a larger image_size. Keras said: {err}") from err
    return keras.Model(inputs, outputs, name=model_name(name))


def model_name(name):
    """A Keras model name for a preset: its name, or its folder's name."""
    preset = preset_of(name).rstrip("/")
    base = os.path.basename(preset) if os.path.isdir(preset) else preset
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "hub_model"


def _converter(name, hub):
    try:
        return _load(name, lambda: hub.layers.ImageConverter.from_preset(preset_of(name)))
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"{name}: the preset has no image converter, so tfkd cannot know the "
                         "preprocessing its weights expect; save the preset with its "
                         "preprocessor (task.save_to_preset(folder) with a task built with "
                         f"preprocessor=...). keras-hub said: {err}") from err


def _read_preset_json(name, file_name, required=True):
    preset = preset_of(name)
    if os.path.isdir(preset):
        path = os.path.join(preset, file_name)
        if not os.path.exists(path):
            if not required:
                return None
            raise ValueError(f"{name}: {preset!r} is not a keras-hub preset folder (no "
                             f"{file_name}); make one with task.save_to_preset(folder).")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if os.sep in preset and "://" not in preset:
        raise FileNotFoundError(f"{name}: no preset folder {preset!r}.")
    preset_utils = keras_hub().src.utils.preset_utils
    if "://" not in preset and preset not in preset_utils.BUILTIN_PRESETS:
        raise ValueError(f"{name}: keras-hub has no preset {preset!r} and there is no folder "
                         "of that name; tfkd.list_models('hub') lists the image classifier "
                         "presets.")
    try:
        return _load(name, lambda: preset_utils.load_json(preset, file_name))
    except FileNotFoundError:
        if required:
            raise
        return None


def _load(name, load):
    """Runs `load`, turning a failed download into an error that says what to do offline.

    keras-hub downloads through kagglehub, which has connect timeouts of its own; a preset
    downloaded before loads from its cache without a network.
    """
    try:
        return load()
    except FileNotFoundError:
        raise
    except OSError as err:  # requests' ConnectionError is one
        if os.path.isdir(preset_of(name)):
            raise
        raise ConnectionError(_offline_message(name, err)) from err


def _offline_message(name, reason):
    preset = preset_of(name)
    return (f"{name}: keras-hub downloads preset {preset!r} from Kaggle, and that failed "
            f"({reason}). Without a network: on a machine with one, run "
            f"keras_hub.models.ImageClassifier.from_preset({preset!r}).save_to_preset('FOLDER'), "
            "copy FOLDER here and pass hub:/path/to/FOLDER.")

