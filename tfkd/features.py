"""Feature distillation: which intermediate outputs to match, and how they are aligned.

A `FeatureTerm` pairs a teacher layer with a student layer, a loss from
`tfkd.feature_losses.FEATURE_LOSSES` (or a callable of the same signature) and a weight.
`tfkd.Distiller(..., features=[...])` reads those layers' outputs from the models' own graphs
(the layers must be in the model's top-level graph, not inside a nested model), aligns them and
adds `weight * loss` to the distillation loss; each term is its own metric in `fit`.

How a pair is aligned, in this order:

- **Tokens become maps.** A (batch, tokens, channels) output of a ViT loses its prefix tokens
  (class, distillation), which have no position, and its patch tokens are laid back on their
  (height, width) grid. So CNN maps and ViT tokens meet as maps; the class token is always
  dropped. The grid comes from the zoo ViT's own patch embedding, or else from a square
  token count (with 0, 1 or 2 prefix tokens).
- **The teacher map is resized to the student's grid** (bilinear; antialiased when it
  shrinks). A pooled (batch, channels) output on one side pools the other side's map.
- **Channels are projected** where the loss needs equal shapes (the FitNets hint, and any
  callable term whose channel counts differ): a learned 1x1 projection (a `Dense` on the
  channel axis) from the student's channels to the teacher's, trained with the student. It
  belongs to the Distiller, not to the student: the exported student is unchanged.
- **Hint targets are standardized**: for "hint", the teacher's feature is normalized to zero
  mean and unit variance over its channels at each position (a LayerNorm without weights)
  before the MSE. Raw stage outputs differ in scale by orders of magnitude between families
  (measured on trained teachers at 28 px: a ViT's residual stream gave a hint of ~50 at the
  start against ~0.4 for a CNN's ReLU map), so without it no one weight would suit every pair.

`stage_outputs(model)` names a model's stage outputs (the natural places to read features),
and `propose(teacher, student)` turns them into terms for a family pair.
"""

import dataclasses
import math
import re

import keras
from keras import ops

from tfkd import feature_losses
from tfkd import models as models_lib

__all__ = ["FeatureTerm", "PRESETS", "as_terms", "parse", "propose", "resolve",
           "stage_outputs"]

# Losses that compare equal shapes, so the student's channels are projected to the teacher's.
_PROJECTED = ("hint",)


@dataclasses.dataclass(frozen=True)
class FeatureTerm:
    """One feature-distillation term: `weight * loss(student_layer, teacher_layer)`.

    Attributes:
        teacher_layer: the name of a layer in the teacher's top-level graph.
        student_layer: the name of a layer in the student's top-level graph.
        loss: a name from `tfkd.feature_losses.FEATURE_LOSSES` ("hint", "attention",
            "relation", "rkd"), or a callable `f(student, teacher, *, sample_weight=None)`.
        weight: its weight in the total loss (>= 0).
        loss_kwargs: keyword arguments for the loss, e.g. `{"heads": 4}` for "relation".
    """

    teacher_layer: str
    student_layer: str
    loss: object = "hint"
    weight: float = 1.0
    loss_kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for field in ("teacher_layer", "student_layer"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"FeatureTerm {field} must be a layer name, got {value!r}; "
                                 "tfkd.features.stage_outputs(model) lists good candidates.")
        if not callable(self.loss) and self.loss not in feature_losses.FEATURE_LOSSES:
            raise ValueError(f"Unknown feature loss {self.loss!r}; use one of "
                             f"{sorted(feature_losses.FEATURE_LOSSES)} or a callable "
                             "f(student, teacher, *, sample_weight=None).")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not self.weight >= 0:
            raise ValueError(f"FeatureTerm weight must be a number >= 0, got {self.weight!r}.")

    @property
    def loss_name(self):
        """The loss's name: its table name, or the callable's `__name__`."""
        return self.loss if isinstance(self.loss, str) else getattr(
            self.loss, "__name__", type(self.loss).__name__)

    @property
    def projected(self):
        """Whether the student's channels are projected to the teacher's for this loss."""
        return self.loss in _PROJECTED or callable(self.loss)

    def get_config(self):
        loss = self.loss if isinstance(self.loss, str) else \
            keras.saving.serialize_keras_object(self.loss)
        return {"teacher_layer": self.teacher_layer, "student_layer": self.student_layer,
                "loss": loss, "weight": float(self.weight), "loss_kwargs": dict(self.loss_kwargs)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if not isinstance(config.get("loss", "hint"), str):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


def as_terms(features):
    """A list of `FeatureTerm`s from what `Distiller(features=...)` accepts.

    Args:
        features: None or a list whose items are `FeatureTerm`s, tuples
            `(teacher_layer, student_layer[, loss[, weight[, loss_kwargs]]])` or dicts of those
            fields.

    Raises:
        ValueError: for anything else, with the accepted forms.
    """
    if features is None:
        return []
    if isinstance(features, (str, FeatureTerm, dict)) or not hasattr(features, "__iter__"):
        raise ValueError(
            f"features must be a list of terms, got {features!r}; e.g. "
            "[('block5c_add', 's4_mvit_fusion_bn', 'hint', 1.0)] or "
            "tfkd.features.propose(teacher, student).")
    terms = []
    for item in features:
        if isinstance(item, FeatureTerm):
            terms.append(item)
        elif isinstance(item, dict):
            terms.append(FeatureTerm.from_config(item))
        elif isinstance(item, (tuple, list)) and 2 <= len(item) <= 5:
            terms.append(FeatureTerm(*item))
        else:
            raise ValueError(
                f"A feature term must be a FeatureTerm, a dict or a tuple (teacher_layer, "
                f"student_layer[, loss[, weight]]), got {item!r}.")
    return terms


def stage_outputs(model):
    """The names of `model`'s stage outputs, shallow to deep: the layers worth distilling.

    For a zoo model, its family's blocks (`STAGES` in the family file): the last layer of each
    block, and for keras.applications families only the deepest block at each spatial size.
    Stages whose map is 1x1 are left out. For any other model: the last residual `Add` at each
    output shape.

    Raises:
        ValueError: when no stage is found (name layers yourself in `FeatureTerm`s).
    """
    found = models_lib.stage_pattern(model)
    if found is None:
        blocks = [(layer.name, layer) for layer in model.layers
                  if isinstance(layer, keras.layers.Add)]
        per_shape = True
    else:
        pattern, per_shape = found
        blocks = []
        for layer in model.layers:
            match = re.match(pattern, layer.name)
            if match:
                blocks.append((match.group(1), layer))
    last = {}
    for block, layer in blocks:  # layers are in graph order: the last one wins
        last.pop(block, None)
        last[block] = layer
    names = [layer.name for layer in last.values() if not _is_pointlike(layer.output.shape)]
    if per_shape:
        by_shape = {}
        for name in names:
            shape = tuple(model.get_layer(name).output.shape[1:-1])
            by_shape.pop(shape, None)
            by_shape[shape] = name
        names = sorted(by_shape.values(), key=names.index)
    if not names:
        raise ValueError(f"No stage outputs found in {model.name!r}; name the layers "
                         "yourself: FeatureTerm(teacher_layer, student_layer, loss).")
    return names


def _is_pointlike(shape):
    return len(shape) == 4 and shape[1] == 1 and shape[2] == 1


# Presets for `propose` and the recipes' --features: (loss, weight, how many deepest stages).
# Attention maps are unit vectors whose squared distances are small (~0.05 after a few dozen
# steps for a CNN pair here): weight 10 makes the term count; the paper's beta = 1000 on a mean
# over positions is ~16 on an 8x8 map.
PRESETS = {
    "hint": (("hint", 1.0, 1),),
    "attention": (("attention", 10.0, 2),),
    "relation": (("relation", 1.0, 1),),
    "rkd": (("rkd", 1.0, 1),),
}


def propose(teacher, student, preset="auto"):
    """Feature terms pairing the deepest stages of `teacher` and `student`.

    Args:
        teacher, student: built models (zoo models get their family's stages).
        preset: a name from `PRESETS`, or "auto": per family pair, the FitNets hint on the
            deepest stages, plus attention transfer on the two deepest stages when both are
            CNNs, or token relations on the deepest stage when both are ViTs.

    Returns:
        A list of `FeatureTerm`s; stage k from the end of the teacher meets stage k from the end
        of the student.
    """
    if preset == "auto":
        kinds = (models_lib.family_and_kind(teacher)[1], models_lib.family_and_kind(student)[1])
        recipe = list(PRESETS["hint"])
        if kinds == ("cnn", "cnn"):
            recipe += PRESETS["attention"]
        elif kinds == ("vit", "vit"):
            recipe += PRESETS["relation"]
    elif preset in PRESETS:
        recipe = PRESETS[preset]
    else:
        raise ValueError(f"Unknown feature preset {preset!r}; choose 'auto' or one of "
                         f"{sorted(PRESETS)}.")
    teacher_stages, student_stages = stage_outputs(teacher), stage_outputs(student)
    terms = []
    for loss, weight, depth in recipe:
        depth = min(depth, len(teacher_stages), len(student_stages))
        for k in range(depth, 0, -1):
            terms.append(FeatureTerm(teacher_stages[-k], student_stages[-k], loss, weight))
    return terms


def parse(spec):
    """What a command line's `--features` says: None ("none" or empty), a preset name, or a
    list of `FeatureTerm`s written `TEACHER_LAYER:STUDENT_LAYER[:LOSS[:WEIGHT]]`, separated by
    commas.

    Raises:
        ValueError: with the accepted forms.
    """
    spec = (spec or "").strip()
    if spec in ("", "none"):
        return None
    if spec == "auto" or spec in PRESETS:
        return spec
    if ":" not in spec:
        raise ValueError(f"features={spec!r} is neither a preset (none, auto, "
                         f"{', '.join(sorted(PRESETS))}) nor terms written "
                         "TEACHER_LAYER:STUDENT_LAYER[:LOSS[:WEIGHT]], e.g. "
                         "stage3_b_relu:s4_mvit_fusion_swish:hint:1,stage2_b_relu:s3_x:attention")
    terms = []
    for text in spec.split(","):
        parts = text.strip().split(":")
        if not 2 <= len(parts) <= 4 or not all(parts):
            raise ValueError(f"feature term {text!r}: write it TEACHER_LAYER:STUDENT_LAYER"
                             "[:LOSS[:WEIGHT]], e.g. stage3_b_relu:block3_mlp_residual:hint:1")
        if len(parts) == 4:
            try:
                parts[3] = float(parts[3])
            except ValueError:
                raise ValueError(f"feature term {text!r}: its weight {parts[3]!r} is not a "
                                 "number") from None
        terms.append(FeatureTerm(*parts))
    return terms


def resolve(spec, teacher, student):
    """The `FeatureTerm`s a `parse`d spec gives for this teacher and student."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return propose(teacher, student, spec)
    return list(spec)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a layer's output is laid out: "map" (h, w, c), "tokens" or "vector" (c)."""

    kind: str
    channels: int
    grid: tuple = ()
    prefix_tokens: int = 0


def layer_output(model, name, role):
    """The symbolic output of layer `name` in `model`'s graph, with its `Layout`."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise ValueError(f"The {role} {model.name!r} has no layer {name!r} in its top-level "
                         f"graph; its stage outputs are {_stages_or_none(model)} "
                         "(tfkd.features.stage_outputs).") from None
    output = layer.output
    if isinstance(output, (list, tuple)):
        raise ValueError(f"Layer {name!r} of the {role} has several outputs; pick a layer "
                         "with one.")
    return output, _layout(model, tuple(output.shape), name, role)


def _stages_or_none(model):
    try:
        return stage_outputs(model)
    except ValueError:
        return "not known"


def _layout(model, shape, name, role):
    if len(shape) == 2:
        return Layout("vector", shape[-1])
    if len(shape) == 4:
        return Layout("map", shape[-1], grid=shape[1:3])
    if len(shape) == 3:
        prefix, grid = _token_grid(model, shape[1])
        if grid is not None:
            return Layout("tokens", shape[-1], grid=grid, prefix_tokens=prefix)
    raise ValueError(f"Layer {name!r} of the {role} outputs shape {shape}, which tfkd cannot "
                     "lay out as a feature map: pick a layer with a (batch, height, width, "
                     "channels) map, (batch, tokens, channels) tokens on a square grid, or a "
                     "(batch, channels) vector.")


def _token_grid(model, tokens):
    """(prefix tokens, (h, w)) of a token sequence, or (0, None) when it has no grid."""
    embedding = next((layer for layer in model.layers if hasattr(layer, "num_prefix_tokens")),
                     None)
    patches = next((layer for layer in model.layers if layer.name == "patch_embedding"), None)
    if embedding is not None and patches is not None:
        height, width = patches.output.shape[1:3]
        if height * width + embedding.num_prefix_tokens == tokens:
            return embedding.num_prefix_tokens, (height, width)
    for prefix in (0, 1, 2):
        side = math.isqrt(max(tokens - prefix, 0))
        if side > 0 and side * side == tokens - prefix:
            return prefix, (side, side)
    return 0, None


def to_map(x, layout):
    """`x` as a (batch, h, w, c) map (tokens: prefix dropped), or as it is for a vector."""
    if layout.kind != "tokens":
        return x
    patches = x[:, layout.prefix_tokens:, :]
    return ops.reshape(patches, (-1, *layout.grid, layout.channels))


def align_teacher(teacher, teacher_layout, student_layout):
    """The teacher's feature on the student's grid (or pooled to match a student vector)."""
    if student_layout.kind == "vector" and teacher_layout.kind != "vector":
        return ops.mean(teacher, axis=(1, 2))
    if teacher_layout.kind == "vector" or student_layout.kind == "vector":
        return teacher
    if tuple(teacher_layout.grid) == tuple(student_layout.grid):
        return teacher
    shrink = any(t > s for t, s in zip(teacher_layout.grid, student_layout.grid))
    return ops.image.resize(teacher, student_layout.grid, interpolation="bilinear",
                            antialias=shrink)


def align_student(student, student_layout, teacher_layout):
    """The student's feature, pooled when the teacher's is a vector."""
    if teacher_layout.kind == "vector" and student_layout.kind != "vector":
        return ops.mean(student, axis=(1, 2))
    return student


def grid_of(layout):
    """The (h, w) a layout has once tokens are maps; () for a vector."""
    return tuple(layout.grid) if layout.kind != "vector" else ()


class FeaturePlan:
    """The extractors, layouts and projections a Distiller needs for its feature terms.

    A plain object, deliberately not a Keras layer: its extractor models share the teacher's and
    student's layers, and the Distiller tracks only `projections` (the new weights), so a saved
    Distiller stores each weight once.

    Args:
        terms: `FeatureTerm`s.
        teacher, student: the Distiller's models.
        student_logits: the student's logit tensors in its own graph (one, or DeiT's two heads).
    """

    def __init__(self, terms, teacher, student, student_logits):
        self.terms = list(terms)
        teacher_out = [layer_output(teacher, t.teacher_layer, "teacher") for t in self.terms]
        student_out = [layer_output(student, t.student_layer, "student") for t in self.terms]
        self.teacher_layouts = [layout for _, layout in teacher_out]
        self.student_layouts = [layout for _, layout in student_out]
        teacher_features = [tensor for tensor, _ in teacher_out]
        self.teacher_with_logits = keras.Model(teacher.input, [teacher.output, *teacher_features],
                                               name=f"{teacher.name}_features")
        # With cached logits the teacher runs only up to its deepest feature layer.
        self.teacher_features = keras.Model(teacher.input, teacher_features,
                                            name=f"{teacher.name}_features_only")
        self.student = keras.Model(student.input,
                                   [*student_logits, *(tensor for tensor, _ in student_out)],
                                   name=f"{student.name}_features")
        self.logit_count = len(student_logits)
        self.projections = []
        self._projection_of = {}
        for index, term in enumerate(self.terms):
            self._check_pair(index, term)
            needs = term.projected and (term.loss in _PROJECTED or self._channels_differ(index))
            if needs:
                projection = keras.layers.Dense(self.teacher_layouts[index].channels,
                                                name=f"feature{index}_projection")
                projection.build((None, self.student_layouts[index].channels))
                self._projection_of[index] = len(self.projections)
                self.projections.append(projection)
        self.metric_names = _metric_names(self.terms)
        # Each loss once on a zero batch of two: a mistake in a term (relation heads that do
        # not divide the channels, a callable's shape check) fails here, not in `fit`'s trace.
        self.losses([ops.zeros((2, *t.shape[1:])) for t, _ in student_out],
                    [ops.zeros((2, *t.shape[1:])) for t, _ in teacher_out])

    def _channels_differ(self, index):
        return self.teacher_layouts[index].channels != self.student_layouts[index].channels

    def _check_pair(self, index, term):
        teacher, student = self.teacher_layouts[index], self.student_layouts[index]
        if term.loss in ("attention", "relation") and "vector" in (teacher.kind, student.kind):
            raise ValueError(f"Feature term {index} ({term.loss}) compares positions, but "
                             f"{term.teacher_layer!r} is a {teacher.kind} and "
                             f"{term.student_layer!r} a {student.kind}; pick map or token "
                             "layers (tfkd.features.stage_outputs), or use 'hint' or 'rkd'.")

    def losses(self, student_features, teacher_features, sample_weight=None):
        """Each term's unweighted loss, in term order."""
        values = []
        for index, term in enumerate(self.terms):
            s_layout, t_layout = self.student_layouts[index], self.teacher_layouts[index]
            student = align_student(to_map(student_features[index], s_layout), s_layout,
                                    t_layout)
            teacher = align_teacher(to_map(ops.stop_gradient(teacher_features[index]),
                                           t_layout), t_layout, s_layout)
            if index in self._projection_of:
                student = self.projections[self._projection_of[index]](student)
            if term.loss == "hint":
                teacher = _standardized(teacher)
            fn = feature_losses.FEATURE_LOSSES.get(term.loss, term.loss)
            kwargs = dict(term.loss_kwargs)
            if sample_weight is not None:
                kwargs["sample_weight"] = sample_weight
            values.append(fn(student, teacher, **kwargs))
        return values


def _standardized(x):
    mean = ops.mean(x, axis=-1, keepdims=True)
    variance = ops.var(x, axis=-1, keepdims=True)
    return (x - mean) * ops.rsqrt(variance + 1e-5)


def _metric_names(terms):
    """`<loss>_loss` per term; numbered when a loss appears more than once."""
    counts = {}
    for term in terms:
        counts[term.loss_name] = counts.get(term.loss_name, 0) + 1
    names, seen = [], {}
    for term in terms:
        name = term.loss_name
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}{seen[name]}"
        names.append(f"{name}_loss")
    return names
