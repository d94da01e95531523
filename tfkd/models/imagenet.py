"""ImageNet weights for the keras.applications families, through Keras's own download and cache.

A family that has them (efficientnet, mobilenet) defines `imagenet_file(name, **options)` ->
(file name, URL, sha256) of the "no top" backbone file keras.applications downloads, and
`backbone(name, *, image_size, **options)`, the same architecture without its head. The tfkd
model is built exactly as with random weights (same layers, same head), then the backbone file
is loaded into an identical headless backbone by Keras's own loader and copied across in order;
the head stays freshly initialized for the model's classes. So `weights="imagenet"` and
`weights=None` give one architecture: a `.weights.h5` saved from one loads into the other.
"""

import os
import urllib.error
import urllib.request

import keras
from keras.src.backend import config as keras_config  # keras is pinned to 3.15.*

# Seconds an offline machine waits before it is told where to get the file.
TIMEOUT_S = 5


def load(model, module, name, size, options, weights):
    """Loads the ImageNet backbone into `model` (built by `module.build`), in place.

    Args:
        weights: "imagenet" (downloaded by Keras into its cache, ~/.keras/models) or the path
            of the backbone file Keras would download.
    """
    file_name, url, file_hash = module.imagenet_file(name, **options)
    if weights == "imagenet":
        path = _download(name, file_name, url, file_hash)
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"weights file {path!r} does not exist; for {name} it is {file_name}, "
                f"which Keras downloads from {url}.")
    backbone = module.backbone(name, image_size=size, **options)
    try:
        backbone.load_weights(path)
    except (ValueError, OSError, KeyError) as err:
        raise ValueError(
            f"weights file {path!r} is not the ImageNet backbone of {name} (with these "
            f"options); that file is {file_name}, from {url}. Keras said: {err}") from err
    _copy_in_order(backbone, model)
    fix = getattr(module, "after_imagenet", None)
    if fix is not None:
        fix(name, model)


def _download(name, file_name, url, file_hash):
    cached = os.path.join(_keras_home(), "models", file_name)
    if not os.path.exists(cached):
        # keras.utils.get_file has no timeout: on a machine whose network drops packets it
        # would hang. A HEAD request with one (through the same proxies) fails in seconds.
        reason = _unreachable(url)
        if reason:
            raise ConnectionError(_offline_message(name, file_name, url, reason))
    try:
        return keras.utils.get_file(file_name, url, cache_subdir="models", file_hash=file_hash,
                                    cache_dir=_keras_home())
    except Exception as err:  # noqa: BLE001 - Keras raises a bare Exception for fetch errors
        raise ConnectionError(_offline_message(name, file_name, url, err)) from err


def _offline_message(name, file_name, url, reason):
    return (f"{name} with weights='imagenet' needs {file_name}, which Keras downloads from "
            f"{url}, and that failed ({reason}). Without a network: download the file on "
            f"another machine, then pass weights='/path/to/{file_name}', or put it in "
            f"{os.path.join(_keras_home(), 'models')}/ where Keras looks first (it checks the "
            "file's hash).")


def _unreachable(url):
    """Why `url` cannot be reached within TIMEOUT_S, or None when it can."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                    timeout=TIMEOUT_S):
            return None
    except (urllib.error.URLError, OSError) as err:
        return getattr(err, "reason", None) or err


def _keras_home():
    # Keras's cache folder: $KERAS_HOME as it is now (Keras reads it once, at import), else
    # Keras's own choice (~/.keras, or /tmp/.keras where the home folder is read-only).
    return os.environ.get("KERAS_HOME") or keras_config.keras_home()


def _copy_in_order(backbone, model):
    """Copies every weight of `backbone` into the same layers of `model`.

    Both were built by the same keras.applications function, so their layers with weights come
    in the same order, the model's head last; auto-generated names (normalization_1, ...) differ
    between two builds, so the order, checked by type and shapes, is what matches them.
    """
    source = [layer for layer in backbone.layers if layer.weights]
    target = [layer for layer in model.layers if layer.weights][:len(source)]
    for src, dst in zip(source, target, strict=True):
        shapes = [tuple(w.shape) for w in src.weights]
        if type(src) is not type(dst) or shapes != [tuple(w.shape) for w in dst.weights]:
            raise RuntimeError(f"backbone layer {src.name} does not line up with model layer "
                               f"{dst.name}; tfkd's ImageNet loading needs updating for this "
                               "Keras version.")
        dst.set_weights(src.get_weights())
        if hasattr(dst, "finalize_state"):  # Normalization reads a copy made from its weights
            dst.finalize_state()
