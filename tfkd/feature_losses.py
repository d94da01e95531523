"""Intermediate-feature distillation losses as pure functions.

Every loss has the signature

    f(student_features, teacher_features, *, sample_weight=None, **kw) -> scalar float32

and compares features that `tfkd.Distiller(features=...)` has already aligned: the same batch of
examples at the same positions. Channels need to be equal only where a loss says so. Features
have rank >= 2: (batch, channels), (batch, tokens, channels) or (batch, height, width, channels);
"positions" are all the axes between the batch axis and the last (channel) axis, flattened in
row-major order (so a (height, width) map is read like a ViT's row-major patch tokens).

Inputs are cast to float32. Per-example losses return the mean over the batch as Keras reduces
("sum_over_batch_size": weighted sum of per-example values divided by the batch size).
Relational losses compare the examples of a batch with each other, so they take no sample
weights. Shapes are checked where they are known when the function is traced; a None
dimension is not checked. `FEATURE_LOSSES` maps the names accepted by
`tfkd.FeatureTerm(loss=...)` to the functions.
"""

import math
import numbers

from keras import ops

from tfkd import losses

# Guards divisions by norms and distances that are zero for degenerate inputs (all-zero maps,
# duplicate examples); far below any real feature scale, and its square is a normal float32.
_EPS = 1e-12


def _shape(x):
    return tuple(x.shape)


def _check_pair(name, student, teacher, *, min_rank=2, same_positions=False):
    """Raises ValueError for mismatches visible in the static shapes of a feature pair."""
    s, t = _shape(student), _shape(teacher)
    if len(s) < min_rank or len(t) < min_rank:
        if min_rank > 2:
            raise ValueError(
                f"{name} compares positions, so it needs (batch, tokens, channels) or "
                f"(batch, height, width, channels) features, got student {s} and teacher {t}; "
                "pick map or token layers (tfkd.features.stage_outputs), or use 'hint' or "
                "'rkd' for pooled (batch, channels) features.")
        raise ValueError(f"{name} needs features with a batch axis and a channel axis (rank >= "
                         f"2), got student {s} and teacher {t}.")
    if s[0] is not None and t[0] is not None and s[0] != t[0]:
        raise ValueError(f"{name} compares the same examples, but the student's batch has {s[0]} "
                         f"and the teacher's {t[0]} (student {s}, teacher {t}); feed both models "
                         "the same batch.")
    if same_positions and not _same_dims(s[1:-1], t[1:-1]):
        raise ValueError(f"{name} compares positions one to one, got student positions {s[1:-1]} "
                         f"and teacher positions {t[1:-1]} (student {s}, teacher {t}); resize "
                         "one map to the other's grid (tfkd.Distiller(features=...) resizes the "
                         "teacher's map to the student's).")


def _same_dims(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _reject_sample_weight(name, sample_weight):
    if sample_weight is not None:
        raise ValueError(f"{name} compares the examples of a batch with each other and cannot "
                         "weight them one by one; pass no sample_weight (or use a per-example "
                         "loss such as 'hint').")


def _flatten_positions(x):
    """(batch, *positions, channels) -> (batch, positions, channels), row-major."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], -1, shape[-1]))


def _huber(x):
    """Huber loss with delta 1 (Keras's `huber`, PyTorch's `smooth_l1_loss`), elementwise."""
    a = ops.abs(x)
    return ops.where(a <= 1.0, 0.5 * ops.square(x), a - 0.5)


def hint(student_features, teacher_features, *, sample_weight=None):
    """FitNets hint loss: mean squared error between equal-shaped features.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. The paper's regressor, which
    maps the student's guided layer to the teacher's hint layer, is the Distiller's learned 1x1
    projection of the student's channels; this function sees its output. Per example: the mean
    over all non-batch elements of (student - teacher)^2. The paper writes half the summed
    squared error; the mean keeps the value independent of the layer's size, so one weight
    suits every layer.

    Args:
        student_features: (batch, ..., channels) student features, projected to the teacher's
            channels.
        teacher_features: teacher features of the same shape.
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    student = ops.cast(student_features, "float32")
    teacher = ops.cast(teacher_features, "float32")
    _check_pair("hint", student, teacher)
    if not _same_dims(_shape(student), _shape(teacher)):
        raise ValueError(f"hint needs equal shapes, got student {_shape(student)} and teacher "
                         f"{_shape(teacher)}; project the student's channels to the teacher's "
                         "(tfkd.Distiller(features=...) adds a learned 1x1 projection for "
                         "'hint' terms) and resize the teacher's map to the student's grid.")
    axes = tuple(range(1, len(_shape(student))))
    per_example = ops.mean(ops.square(student - teacher), axis=axes)
    return losses._batch_mean(per_example, sample_weight)


def _attention_map(features, p):
    """Channel-mean of |F|^p, flattened over positions and L2-normalized per example."""
    a = ops.mean(ops.power(ops.abs(features), p), axis=-1)
    a = ops.reshape(a, (ops.shape(a)[0], -1))
    # rsqrt of a clamped squared norm: an all-zero map stays zero, with a finite gradient.
    return a * ops.rsqrt(ops.maximum(ops.sum(ops.square(a), axis=-1, keepdims=True), _EPS**2))


def attention_transfer(student_features, teacher_features, *, p=2, sample_weight=None):
    """Activation-based attention transfer.

    Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
    Convolutional Neural Networks via Attention Transfer", ICLR 2017. The attention map of an
    example is the mean over channels of |F|^p at each position, flattened over positions and
    divided by its L2 norm, so channel counts may differ but positions must match. Per example:
    the squared L2 distance between the student's and the teacher's normalized maps, summed over
    positions. Maps are non-negative unit vectors, so the value lies in [0, 2] for every map
    size.

    The paper's loss is beta/2 times the (unsquared) L2 distance, with beta = 1000; the authors'
    code, like most implementations, squares the distance and also averages it over the P
    positions, so its weight there (beta/2 = 500, or 1000 in RepDistiller) multiplies a value
    P times smaller than this one. To reproduce those settings use weight 500 / P to 1000 / P
    (about 8-16 for an 8x8 map, 0.5-1 for 32x32); weights between 1 and 100 are sensible.

    Args:
        student_features: (batch, *positions, student_channels) student features.
        teacher_features: (batch, *positions, teacher_channels) teacher features.
        p: the exponent of the activations (the paper uses 2); a number >= 1, since |F|^p has
            an infinite gradient at zero activations for p < 1.
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p >= 1:
        raise ValueError(f"attention_transfer needs an exponent p >= 1, got p={p!r}; the paper "
                         "uses p=2.")
    student = ops.cast(student_features, "float32")
    teacher = ops.cast(teacher_features, "float32")
    _check_pair("attention_transfer", student, teacher, min_rank=3, same_positions=True)
    diff = _attention_map(student, float(p)) - _attention_map(teacher, float(p))
    return losses._batch_mean(ops.sum(ops.square(diff), axis=-1), sample_weight)


def _common_divisors(a, b):
    g = math.gcd(a, b)
    return [d for d in range(1, g + 1) if g % d == 0]


def _check_heads(heads, student, teacher):
    channels = [c for c in (_shape(student)[-1], _shape(teacher)[-1]) if c is not None]
    if isinstance(heads, bool) or not isinstance(heads, numbers.Integral) or heads < 1:
        raise ValueError(f"token_relation needs heads to be a positive int, got heads={heads!r}; "
                         "heads=1 relates whole feature vectors.")
    if any(c % heads for c in channels):
        s, t = _shape(student)[-1], _shape(teacher)[-1]
        divisors = _common_divisors(channels[0], channels[-1])
        raise ValueError(f"token_relation splits the channels into heads={heads} relation heads, "
                         f"but the student has {s} channels and the teacher {t}; use heads that "
                         f"divide both, e.g. heads={divisors[-1]} (common divisors: "
                         f"{', '.join(map(str, divisors))}).")
    return int(heads)


def _log_relations(features, heads):
    """(batch, *positions, C) -> (batch, heads, N, N) log-softmax of scaled dot products."""
    x = _flatten_positions(features)
    shape = ops.shape(x)
    head_dim = shape[-1] // heads
    x = ops.transpose(ops.reshape(x, (shape[0], shape[1], heads, -1)), (0, 2, 1, 3))
    scores = ops.matmul(x, ops.transpose(x, (0, 1, 3, 2)))
    scores = scores / ops.sqrt(ops.cast(head_dim, "float32"))
    return ops.log_softmax(scores, axis=-1)


def token_relation(student_features, teacher_features, *, heads=1, sample_weight=None):
    """Self-relation distillation between positions, per relation head.

    Wang et al., "MiniLMv2: Multi-Head Self-Attention Relation Distillation for Compressing
    Pretrained Transformers", Findings of ACL 2021, as applied to vision transformers by Zhang
    et al., "MiniViT: Compressing Vision Transformers with Weight Multiplexing", CVPR 2022.
    Features are flattened to (batch, N positions, C). Each model's channels are split into
    `heads` groups of C / heads; per group h, R_h = softmax(X_h X_h^T / sqrt(C / heads)) over
    the last axis, a (batch, heads, N, N) relation between positions. Per example: the mean
    over heads and rows of KL(R_teacher || R_student), summed over the last axis.

    Channel counts may differ (each side uses its own C / heads), so models with different
    widths and attention-head counts are aligned by choosing the relation heads independently
    of either model's attention heads, as MiniLMv2 does. The papers relate the queries, keys
    and values inside self-attention (MiniViT also relates hidden states); this function
    relates whatever features it is given, typically block outputs, because the Distiller reads
    layer outputs. It is not invariant to the scale of the features: the softmax sharpens as
    they grow.

    Args:
        student_features: (batch, *positions, student_channels) student features.
        teacher_features: (batch, *positions, teacher_channels) teacher features.
        heads: the number of relation heads; a positive int dividing both channel counts.
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    student = ops.cast(student_features, "float32")
    teacher = ops.cast(teacher_features, "float32")
    _check_pair("token_relation", student, teacher, min_rank=3, same_positions=True)
    heads = _check_heads(heads, student, teacher)
    kl_rows = losses._kl_rows(_log_relations(teacher, heads), _log_relations(student, heads))
    return losses._batch_mean(ops.mean(kl_rows, axis=(1, 2)), sample_weight)


def _embeddings(features):
    """Mean over positions: (batch, *positions, C) -> (batch, C)."""
    rank = len(_shape(features))
    return features if rank == 2 else ops.mean(features, axis=tuple(range(1, rank - 1)))


def _rkd_distance(student, teacher, off_diagonal):
    """Huber between mean-normalized pairwise distance matrices, over the off-diagonal pairs."""
    def normalized_distances(x):
        sq = ops.sum(ops.square(x[:, None, :] - x[None, :, :]), axis=-1)
        # Clamped before sqrt: the diagonal is exactly zero, where sqrt has no gradient.
        d = ops.where(off_diagonal > 0, ops.sqrt(ops.maximum(sq, _EPS**2)), 0.0)
        mean = ops.sum(d) / ops.maximum(ops.sum(off_diagonal), 1.0)
        return d / ops.maximum(mean, _EPS)

    terms = _huber(normalized_distances(student) - normalized_distances(teacher)) * off_diagonal
    return ops.sum(terms) / ops.maximum(ops.sum(off_diagonal), 1.0)


def _rkd_angle(student, teacher, off_diagonal):
    """Huber between cos(angle at j of i, j, k), over triplets of distinct examples."""
    def cosines(x):
        diff = x[None, :, :] - x[:, None, :]  # [j, i] = x_i - x_j
        unit = diff * ops.rsqrt(ops.maximum(ops.sum(ops.square(diff), -1, keepdims=True),
                                            _EPS**2))
        return ops.matmul(unit, ops.transpose(unit, (0, 2, 1)))  # [j, i, k]

    distinct = (off_diagonal[:, :, None] * off_diagonal[:, None, :]
                * off_diagonal[None, :, :])
    terms = _huber(cosines(student) - cosines(teacher)) * distinct
    return ops.sum(terms) / ops.maximum(ops.sum(distinct), 1.0)


def relational(student_features, teacher_features, *, distance_weight=1.0, angle_weight=2.0,
               sample_weight=None):
    """Relational knowledge distillation (RKD-DA): distance- and angle-wise losses.

    Park et al., "Relational Knowledge Distillation", CVPR 2019. Features are averaged over
    positions into (batch, C) embeddings, so channel counts and position grids may differ.

    - Distance: pairwise Euclidean distances between the batch's embeddings, each model's matrix
      divided by the mean of its off-diagonal distances; the Huber loss (delta 1) between the
      teacher's and the student's matrices, averaged over the b (b - 1) off-diagonal pairs.
    - Angle: for each triplet (i, j, k) of distinct examples, the cosine of the angle at j
      between normalize(x_i - x_j) and normalize(x_k - x_j); the Huber loss between teacher
      and student, averaged over the b (b - 1) (b - 2) triplets.

    Loss = distance_weight * distance + angle_weight * angle, with the paper's lambda_D = 1 and
    lambda_A = 2 as defaults. The authors' code averages over all b^2 pairs and b^3 triplets,
    including degenerate ones that contribute zero; averaging over the meaningful ones only
    keeps the value from shrinking on small batches. Both terms are invariant to scaling and
    translating either model's embeddings. A batch of fewer than 2 (distance) or 3 (angle)
    examples contributes 0.

    Args:
        student_features: (batch, ..., student_channels) student features.
        teacher_features: (batch, ..., teacher_channels) teacher features.
        distance_weight: lambda_D, the weight of the distance term.
        angle_weight: lambda_A, the weight of the angle term.
        sample_weight: must be None: the loss compares examples with each other.

    Returns:
        Scalar loss.
    """
    _reject_sample_weight("relational (rkd)", sample_weight)
    student = ops.cast(student_features, "float32")
    teacher = ops.cast(teacher_features, "float32")
    _check_pair("relational (rkd)", student, teacher)
    student, teacher = _embeddings(student), _embeddings(teacher)
    off_diagonal = 1.0 - ops.eye(ops.shape(student)[0], dtype="float32")
    return (distance_weight * _rkd_distance(student, teacher, off_diagonal)
            + angle_weight * _rkd_angle(student, teacher, off_diagonal))


FEATURE_LOSSES = {"hint": hint, "attention": attention_transfer, "relation": token_relation,
                  "rkd": relational}
