"""Vision Transformer (ViT) and DeiT students/teachers in plain Keras 3.

Variants follow Touvron et al. 2021, "Training data-efficient image transformers &
distillation through attention" (DeiT): ``*_tiny`` is dim 192, 12 blocks, 3 heads, MLP 768;
``*_small`` is dim 384, 12 blocks, 6 heads, MLP 1536. The ``deit_*`` variants add DeiT's
distillation token and a second linear head. ``vit_micro`` / ``deit_micro`` (dim 128, 4 blocks,
2 heads, MLP 256; not from the paper) are ~10x cheaper: a ViT teacher or student that trains in
minutes on a CPU, for the recipes' default runs. At inference a DeiT model returns the average of
its two heads' logits (DeiT's late fusion); :func:`distillation_heads` exposes both heads
separately so a trainer can put the label loss on one and the teacher loss on the other.

Models take raw RGB pixels (0..255, float or uint8) and return logits.

Default patch size (``patch_size=None``): the largest of 16, 8, 4, 2, 1 that divides both image
sides and still leaves at least 8 patches along the shorter side. So 224x224 gets DeiT's 16
(a 14x14 grid), 32x32 gets 4 (8x8 grid), 64x64 gets 8 and 28x28 gets 2. If that would give more
than 1024 tokens (e.g. 1024x1024, or odd sides where only 1 divides), ``build`` raises and asks
for an explicit ``patch_size``: attention cost grows with the square of the token count.
"""

import math

import keras
from keras import layers, ops

from tfkd.models._options import check_options
from tfkd.models.dropout import Dropout

FAMILY = "vit"
KIND = "vit"
# 8 is the smallest side for which the default rule still yields an 8x8 token grid (patch 1).
MIN_IMAGE_SIZE = 8
# Feature stages: the output tokens of every encoder block (class tokens included).
STAGES = r"^(block\d+)_"

VARIANTS = {
    "vit_micro": {"dim": 128, "depth": 4, "num_heads": 2, "mlp_dim": 256, "distilled": False},
    "deit_micro": {"dim": 128, "depth": 4, "num_heads": 2, "mlp_dim": 256, "distilled": True},
    "vit_tiny": {"dim": 192, "depth": 12, "num_heads": 3, "mlp_dim": 768, "distilled": False},
    "vit_small": {"dim": 384, "depth": 12, "num_heads": 6, "mlp_dim": 1536, "distilled": False},
    "deit_tiny": {"dim": 192, "depth": 12, "num_heads": 3, "mlp_dim": 768, "distilled": True},
    "deit_small": {"dim": 384, "depth": 12, "num_heads": 6, "mlp_dim": 1536, "distilled": True},
}

# Regularisation a recipe may turn on (off by default, as for short distillation runs).
DEFAULT_OPTIONS = {"dropout_rate": 0.0, "attention_dropout_rate": 0.0}

_PATCH_CANDIDATES = (16, 8, 4, 2, 1)
_MIN_GRID = 8
_MAX_DEFAULT_TOKENS = 1024
_LN_EPSILON = 1e-6  # as in the reference ViT/DeiT implementations


def _trunc_normal():
    # ViT/DeiT initialise tokens, position embeddings and heads with a 0.02 truncated normal.
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _linear(units, name):
    return layers.Dense(units, kernel_initializer=_trunc_normal(), name=name)


@keras.saving.register_keras_serializable(package="tfkd")
class TokenEmbedding(layers.Layer):
    """Prepends learned prefix tokens (class, distillation) and adds learned position embeddings.

    Args:
        num_prefix_tokens: 1 for ViT (class token), 2 for DeiT (class + distillation token).
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = num_prefix_tokens

    def build(self, input_shape):
        _, num_patches, dim = input_shape
        self.prefix_tokens = self.add_weight(
            shape=(1, self.num_prefix_tokens, dim),
            initializer=_trunc_normal(),
            name="prefix_tokens",
        )
        self.position_embedding = self.add_weight(
            shape=(1, num_patches + self.num_prefix_tokens, dim),
            initializer=_trunc_normal(),
            name="position_embedding",
        )

    def call(self, patches):
        batch = ops.shape(patches)[0]
        prefix = ops.cast(self.prefix_tokens, patches.dtype)
        prefix = ops.broadcast_to(prefix, (batch, self.num_prefix_tokens, ops.shape(patches)[2]))
        tokens = ops.concatenate([prefix, patches], axis=1)
        return tokens + ops.cast(self.position_embedding, patches.dtype)

    def compute_output_shape(self, input_shape):
        batch, num_patches, dim = input_shape
        return (batch, num_patches + self.num_prefix_tokens, dim)

    def get_config(self):
        return {**super().get_config(), "num_prefix_tokens": self.num_prefix_tokens}


@keras.saving.register_keras_serializable(package="tfkd")
class ClassTokenHead(layers.Layer):
    """ViT head: a linear classifier on the class token (token 0).

    Args:
        num_classes: Number of output logits.
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.classifier = _linear(num_classes, "classifier")

    def build(self, input_shape):
        self.classifier.build((input_shape[0], input_shape[-1]))

    def call(self, tokens):
        return self.classifier(tokens[:, 0])

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="tfkd")
class DistillationHead(layers.Layer):
    """DeiT head: one classifier on the class token, one on the distillation token (token 1).

    Called, it returns the mean of the two logit sets (DeiT's inference rule); `split` gives
    the two sets separately for training.

    Args:
        num_classes: Number of output logits per head.
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.classifier = _linear(num_classes, "classifier")
        self.distiller = _linear(num_classes, "distiller")

    def build(self, input_shape):
        self.classifier.build((input_shape[0], input_shape[-1]))
        self.distiller.build((input_shape[0], input_shape[-1]))

    def split(self, tokens):
        """Returns ``(class_logits, distillation_logits)`` for a normed token sequence.

        Also works on symbolic tensors, which is how `distillation_heads` wires the two
        heads into a second functional model.
        """
        return self.classifier(tokens[:, 0]), self.distiller(tokens[:, 1])

    def call(self, tokens):
        class_logits, distillation_logits = self.split(tokens)
        return (class_logits + distillation_logits) * 0.5

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def default_patch_size(image_size):
    """Returns the patch size ``build`` uses when ``patch_size=None`` (see module docstring).

    Args:
        image_size: ``(height, width)`` in pixels.

    Raises:
        ValueError: If the rule would give more than 1024 tokens.
    """
    height, width = image_size
    for patch in _PATCH_CANDIDATES:
        if height % patch == 0 and width % patch == 0 and min(height, width) // patch >= _MIN_GRID:
            break
    tokens = (height // patch) * (width // patch)
    if tokens > _MAX_DEFAULT_TOKENS:
        raise ValueError(
            f"No default ViT patch size for image size {height}x{width}: the largest patch "
            f"that divides both sides ({patch}) gives {tokens} tokens (limit "
            f"{_MAX_DEFAULT_TOKENS}). Pass patch_size explicitly (one dividing both sides, "
            f"e.g. {_suggest_patches(height, width)}) or resize images to "
            f"{_round_to(height, 16)}x{_round_to(width, 16)}."
        )
    return patch


def _round_to(side, multiple):
    return max(multiple, multiple * round(side / multiple))


def _suggest_patches(height, width):
    common = math.gcd(height, width)
    divisors = [d for d in range(2, min(common, 32) + 1) if common % d == 0]
    return ", ".join(str(d) for d in divisors) or "none above 1; resize the images"


def _check_patch_size(image_size, patch_size):
    height, width = image_size
    if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int or None, got {patch_size!r}.")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by patch_size={patch_size}. Pass "
            f"image_size=({_round_to(height, patch_size)}, {_round_to(width, patch_size)}), "
            f"or a patch_size that divides both sides: {_suggest_patches(height, width)} "
            f"(or patch_size=None for the default rule)."
        )


def _encoder_block(x, spec, options, prefix):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{prefix}_norm1")(x)
    y = layers.MultiHeadAttention(
        num_heads=spec["num_heads"],
        key_dim=spec["dim"] // spec["num_heads"],
        dropout=options["attention_dropout_rate"],
        name=f"{prefix}_attention",
    )(y, y)
    y = Dropout(options["dropout_rate"], name=f"{prefix}_attention_dropout")(y)
    x = layers.Add(name=f"{prefix}_attention_residual")([x, y])
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{prefix}_norm2")(x)
    # Exact (erf) GELU as in the reference models; TFLite has a builtin GELU op for it.
    y = layers.Dense(spec["mlp_dim"], activation="gelu", name=f"{prefix}_mlp_in")(y)
    y = layers.Dense(spec["dim"], name=f"{prefix}_mlp_out")(y)
    y = Dropout(options["dropout_rate"], name=f"{prefix}_mlp_dropout")(y)
    return layers.Add(name=f"{prefix}_mlp_residual")([x, y])


def build(name, *, image_size, num_classes, patch_size=None, **options):
    """Builds a ViT or DeiT classifier.

    Args:
        name: One of ``VARIANTS``; also the model's name.
        image_size: ``(height, width)`` ints, each >= ``MIN_IMAGE_SIZE``.
        num_classes: Number of output logits.
        patch_size: Side of the square patches; None picks one with the module's default rule.
        **options: ``dropout_rate`` and ``attention_dropout_rate`` (both default 0.0).

    Returns:
        A functional `keras.Model` mapping raw (H, W, 3) pixels in 0..255 to logits of shape
        ``(batch, num_classes)``.

    Raises:
        ValueError: For an unknown variant or option, or an image size the patches don't tile.
    """
    if name not in VARIANTS:
        raise ValueError(f"Unknown vit variant {name!r}; choose one of {', '.join(VARIANTS)}.")
    # patch_size is a named argument; it is listed so the error shows every accepted option.
    check_options(name, options, (*DEFAULT_OPTIONS, "patch_size"))
    options = {**DEFAULT_OPTIONS, **options}
    spec = VARIANTS[name]
    height, width = image_size
    if patch_size is None:
        patch_size = default_patch_size(image_size)
    _check_patch_size(image_size, patch_size)

    inputs = keras.Input(shape=(height, width, 3), name="pixels")
    # [-1, 1] as in the original ViT; it also keeps int8 input quantisation simple.
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = layers.Conv2D(spec["dim"], patch_size, strides=patch_size, name="patch_embedding")(x)
    grid = (height // patch_size) * (width // patch_size)
    x = layers.Reshape((grid, spec["dim"]), name="patch_tokens")(x)
    x = TokenEmbedding(2 if spec["distilled"] else 1, name="token_embedding")(x)
    x = Dropout(options["dropout_rate"], name="embedding_dropout")(x)
    for index in range(spec["depth"]):
        x = _encoder_block(x, spec, options, prefix=f"block{index}")
    x = layers.LayerNormalization(epsilon=_LN_EPSILON, name="final_norm")(x)
    head = DistillationHead if spec["distilled"] else ClassTokenHead
    outputs = head(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def distillation_heads(model):
    """Exposes a DeiT model's class and distillation heads separately.

    Args:
        model: Any `keras.Model`; only those containing a `DistillationHead` (DeiT models built
            here, including after a ``.keras`` round trip) have two heads.

    Returns:
        A functional `keras.Model` with ``model``'s inputs and outputs
        ``[class_logits, distillation_logits]`` sharing ``model``'s weights, or None if
        ``model`` has no `DistillationHead`.
    """
    heads = [layer for layer in model.layers if isinstance(layer, DistillationHead)]
    if not heads:
        return None
    head = heads[0]
    # The head's input inside `model`'s own graph, so the new model reuses the encoder. It is
    # not always node 0: a model rebuilt around the same layers (tfkd.qat.quantize_model) calls
    # the head again, and node 0 then belongs to the original model, whose input is another
    # tensor. Wiring the head's Dense sublayers directly (rather than calling the head again
    # with another output structure, which Keras 3.15's graph check rejects) shares the same
    # weights that `model(x)` averages.
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth  # noqa: SLF001
             if node.operation is head]
    head_input = nodes[0].input_tensors[0] if nodes else head.input
    class_logits, distillation_logits = head.split(head_input)
    return keras.Model(model.input, [class_logits, distillation_logits], name=f"{model.name}_heads")
