"""MobileViT (Mehta & Rastegari, ICLR 2022) from built-in Keras 3 layers.

MobileViT interleaves MobileNetV2 inverted residuals with "MobileViT blocks": a local
3x3 conv, a transformer that attends across patches (global context), and a fusion conv.
The network downsamples 32x; the transformers run at 1/8, 1/16 and 1/32 resolution.

The graph uses only built-in layers (Reshape and Permute unfold/fold the patches, and
MultiHeadAttention attends along the patch axis), so a saved `.keras` file loads with
plain `keras.saving.load_model` in a process that never imported tfkd.

Small images: the paper unfolds 2x2 patches, which needs even feature maps. Here the
patch size is chosen per axis: 2 where that feature-map axis is even and at least 4 long,
else 1 (see `_patch_size`). So every input of at least MIN_IMAGE_SIZE builds, square or
not, with the same weights.
"""

import warnings

import keras
from keras import layers

from tfkd.models._options import check_options

# At MIN_IMAGE_SIZE the last block attends over a single token, and Keras then warns on every
# trace that a softmax over a size-1 axis is constant. That is exactly right here (one token
# attends to itself), so the advice in the warning ("use a sigmoid") would mislead users.
warnings.filterwarnings("ignore", message="You are using a softmax over axis .* has size 1",
                        category=UserWarning)

FAMILY = "mobilevit"
KIND = "vit"
# 32 matches the keras.applications CNNs of the zoo; at 32x32 the last MobileViT block
# sees a 1x1 map, which is degenerate but well defined (attention over one token).
MIN_IMAGE_SIZE = 32
# Feature stages: the last layer of each stage s1..s5 (a feature map, after any fold).
STAGES = r"^(s\d+)_"

# Per size, from the paper's Table 4 (and ml-cvnets configs): `channels` are the stem and
# the five stages' output channels, `dims` the transformer width of the MobileViT blocks in
# stages 3-5, `depths` their transformer layer counts, `expansion` the inverted-residual
# expansion, `head_channels` the width of the last 1x1 conv before pooling.
VARIANTS = {
    "mobilevit_xxs": {
        "channels": (16, 16, 24, 48, 64, 80),
        "dims": (64, 80, 96),
        "depths": (2, 4, 3),
        "expansion": 2,
        "head_channels": 320,
    },
    "mobilevit_xs": {
        "channels": (16, 32, 48, 64, 80, 96),
        "dims": (96, 120, 144),
        "depths": (2, 4, 3),
        "expansion": 4,
        "head_channels": 384,
    },
    "mobilevit_s": {
        "channels": (16, 32, 64, 96, 128, 160),
        "dims": (144, 192, 240),
        "depths": (2, 4, 3),
        "expansion": 4,
        "head_channels": 640,
    },
}

# Options `build` accepts, with defaults. The paper trains with classifier dropout 0.1.
_OPTIONS = {"dropout": 0.1}

# Short CPU schedules (thousands of steps) leave 0.99-momentum moving statistics near their
# initial values, so the model evaluates at chance; 0.9 tracks the data within ~50 steps.
_BN_MOMENTUM = 0.9
_NUM_HEADS = 4  # all sizes in the paper use 4 heads
_MLP_RATIO = 2  # transformer FFN width = 2 x transformer dim
# PyTorch's LayerNorm epsilon, as the paper's models were trained with it.
_LN_EPSILON = 1e-5


def _conv_bn(x, filters, kernel_size, name, strides=1, activation=True):
    """Conv2D (no bias) -> BatchNorm -> optional swish."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation("swish", name=f"{name}_swish")(x)
    return x


def _inverted_residual(x, filters, strides, expansion, name):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project, residual."""
    in_channels = x.shape[-1]
    y = _conv_bn(x, in_channels * expansion, 1, name=f"{name}_expand")
    y = layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw_conv"
    )(y)
    y = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_dw_bn")(y)
    y = layers.Activation("swish", name=f"{name}_dw_swish")(y)
    y = _conv_bn(y, filters, 1, name=f"{name}_project", activation=False)
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _patch_size(length):
    """Patch size along one feature-map axis of `length` pixels.

    The paper uses 2, which needs an even axis with at least two patches along it. Small
    inputs break that: 48x48 gives a 3x3 map at 1/16, and 32x32 a 2x2 one, where a 2x2
    patch is the whole map and attention over one token mixes nothing. There we fall back
    to 1, rather than padding or resizing the map: it is exact (no zero tokens diluting
    attention, no interpolation), keeps the parameter count independent of the input size,
    and makes attention fully global along that axis. Its cost, 2x more tokens along the
    axis, only matters for large odd maps. A 1x1 map (1/32 of a 32-pixel axis) still has
    one token; its transformer reduces to per-pixel value projections and MLPs.
    """
    return 2 if length % 2 == 0 and length >= 4 else 1


def _unfold(x, patch, name):
    """(B, H, W, D) -> (B, P, N, D): P pixels per patch, N patches."""
    height, width, dim = x.shape[1:]
    ph, pw = patch
    x = layers.Reshape((height // ph, ph, width // pw, pw, dim), name=f"{name}_unfold_split")(x)
    # Permute's axes are 1-based and exclude the batch axis.
    x = layers.Permute((2, 4, 1, 3, 5), name=f"{name}_unfold_permute")(x)
    return layers.Reshape((ph * pw, (height // ph) * (width // pw), dim), name=f"{name}_unfold")(x)


def _fold(x, height, width, patch, name):
    """Inverse of `_unfold`: (B, P, N, D) -> (B, H, W, D)."""
    ph, pw = patch
    dim = x.shape[-1]
    x = layers.Reshape((ph, pw, height // ph, width // pw, dim), name=f"{name}_fold_split")(x)
    x = layers.Permute((3, 1, 4, 2, 5), name=f"{name}_fold_permute")(x)
    return layers.Reshape((height, width, dim), name=f"{name}_fold")(x)


def _transformer_layer(x, dim, name):
    """Pre-norm transformer layer on (B, P, N, D), attending across the N patches."""
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{name}_ln1")(x)
    # attention_axes=(2,) keeps the pixel-in-patch axis P as a batch-like axis, so pixels
    # only attend to the same position in other patches, as in the paper.
    y = layers.MultiHeadAttention(
        _NUM_HEADS, dim // _NUM_HEADS, attention_axes=(2,), name=f"{name}_mha"
    )(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{name}_ln2")(x)
    y = layers.Dense(_MLP_RATIO * dim, activation="swish", name=f"{name}_mlp1")(y)
    y = layers.Dense(dim, name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def _mobilevit_block(x, dim, depth, name):
    """Local conv, global transformer over unfolded patches, fold, fuse with the input."""
    height, width, channels = x.shape[1:]
    patch = (_patch_size(height), _patch_size(width))
    y = _conv_bn(x, channels, 3, name=f"{name}_local")
    # Linear projection into the transformer width (the paper's 1x1 conv, no norm/act).
    y = layers.Conv2D(dim, 1, use_bias=False, name=f"{name}_in_proj")(y)
    y = _unfold(y, patch, name)
    for i in range(depth):
        y = _transformer_layer(y, dim, name=f"{name}_tf{i}")
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{name}_ln")(y)
    y = _fold(y, height, width, patch, name)
    y = _conv_bn(y, channels, 1, name=f"{name}_out_proj")
    y = layers.Concatenate(name=f"{name}_concat")([x, y])
    return _conv_bn(y, channels, 3, name=f"{name}_fusion")


def build(name, *, image_size, num_classes, **options):
    """Builds a MobileViT classifier with random weights.

    Args:
        name: one of `VARIANTS` ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s"); also the
            model's name.
        image_size: (height, width) of the input, each >= MIN_IMAGE_SIZE (the caller checks).
        num_classes: number of output logits.
        **options: `dropout` (float, default 0.1): dropout rate before the classifier.

    Returns:
        A functional `keras.Model` mapping raw RGB pixels in [0, 255] of shape
        (batch, height, width, 3) to logits of shape (batch, num_classes).

    Raises:
        ValueError: for an unknown variant name or option.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown MobileViT variant {name!r}; choose one of {sorted(VARIANTS)}")
    check_options(name, options, _OPTIONS)
    opts = {**_OPTIONS, **options}
    cfg = VARIANTS[name]
    stem, c1, c2, c3, c4, c5 = cfg["channels"]
    expansion = cfg["expansion"]

    inputs = keras.Input(shape=(*image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)  # the paper trains on [0, 1]
    x = _conv_bn(x, stem, 3, strides=2, name="stem")
    x = _inverted_residual(x, c1, 1, expansion, name="s1_mv2")
    x = _inverted_residual(x, c2, 2, expansion, name="s2_mv2_0")
    x = _inverted_residual(x, c2, 1, expansion, name="s2_mv2_1")
    x = _inverted_residual(x, c2, 1, expansion, name="s2_mv2_2")
    for stage, (filters, dim, depth) in enumerate(zip((c3, c4, c5), cfg["dims"], cfg["depths"])):
        prefix = f"s{stage + 3}"
        x = _inverted_residual(x, filters, 2, expansion, name=f"{prefix}_mv2")
        x = _mobilevit_block(x, dim, depth, name=f"{prefix}_mvit")
    x = _conv_bn(x, cfg["head_channels"], 1, name="head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(opts["dropout"], name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
