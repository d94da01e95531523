"""Distillation losses as pure functions.

Every loss has the signature

    f(student_logits, teacher_logits, labels, *, temperature, sample_weight=None, **kw) -> scalar

and returns the mean over the batch (Keras's "sum_over_batch_size": weighted sum divided by the
batch size); `dist` relates the examples of a batch to each other, so it takes no sample
weights. They take logits, never probabilities, and know nothing about models or
distribution strategies, so each one is tested against numpy on a fixed batch. `LOSSES` maps
the names accepted by `tfkd.Distiller(distillation_loss=...)` to them.
"""

from keras import ops


def _batch_mean(per_example, sample_weight):
    """Weighted sum over the batch divided by the batch size, as Keras losses reduce."""
    if sample_weight is not None:
        per_example = per_example * ops.cast(ops.reshape(sample_weight, (-1,)), per_example.dtype)
    return ops.mean(per_example)


def _kl_rows(p_log_target, p_log_pred):
    """Row-wise KL(target || pred) from log-probabilities; zero-probability targets add 0."""
    p_target = ops.exp(p_log_target)
    terms = ops.where(p_target > 0, p_target * (p_log_target - p_log_pred), 0.0)
    return ops.sum(terms, axis=-1)


def kl(student_logits, teacher_logits, labels=None, *, temperature=4.0, sample_weight=None):
    """Hinton et al. (2015) knowledge distillation.

    KL(softmax(teacher / T) || softmax(student / T)) * T^2. The T^2 factor keeps the gradient
    scale independent of T, so `student_loss_weight` means the same at every temperature.

    Args:
        student_logits: (batch, classes) student logits.
        teacher_logits: (batch, classes) teacher logits.
        labels: unused; accepted so every loss shares one signature.
        temperature: softening temperature T > 0.
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    del labels
    t = float(temperature)
    log_p_teacher = ops.log_softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
    log_p_student = ops.log_softmax(ops.cast(student_logits, "float32") / t, axis=-1)
    return _batch_mean(_kl_rows(log_p_teacher, log_p_student), sample_weight) * (t * t)


def hard(student_logits, teacher_logits, labels=None, *, temperature=None, sample_weight=None):
    """DeiT hard distillation (Touvron et al., 2021): cross-entropy on the teacher's argmax.

    Args:
        student_logits: (batch, classes) student logits.
        teacher_logits: (batch, classes) teacher logits; only their argmax is used.
        labels: unused.
        temperature: unused (hard targets have no temperature).
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    del labels, temperature
    teacher_labels = ops.argmax(teacher_logits, axis=-1)
    return cross_entropy(student_logits, teacher_labels, sample_weight=sample_weight)


def dkd(student_logits, teacher_logits, labels, *, temperature=4.0, alpha=1.0, beta=8.0,
        sample_weight=None):
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022): alpha * TCKD + beta * NCKD.

    TCKD is the KL between the binary (target, everything else) distributions of teacher and
    student; NCKD is the KL between their distributions over the non-target classes only. Both
    are taken at temperature T and multiplied by T^2, as in the paper.

    Args:
        student_logits: (batch, classes) student logits.
        teacher_logits: (batch, classes) teacher logits.
        labels: (batch,) integer ground-truth classes (DKD needs them to split the classes).
        temperature: softening temperature T > 0.
        alpha: weight of the target-class term.
        beta: weight of the non-target-class term.
        sample_weight: optional (batch,) weights.

    Returns:
        Scalar loss.
    """
    if labels is None:
        raise ValueError("dkd needs the ground-truth labels to split target and non-target "
                         "classes; pass (images, labels) batches.")
    t = float(temperature)
    s = ops.cast(student_logits, "float32") / t
    te = ops.cast(teacher_logits, "float32") / t
    target = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), ops.shape(s)[-1])

    def binary_log_probs(logits):
        log_p = ops.log_softmax(logits, axis=-1)
        log_target = ops.sum(log_p * target, axis=-1)
        # log(1 - p_target) computed from the other classes for precision near p_target = 1.
        log_rest = ops.logsumexp(ops.where(target > 0, -1e9, log_p), axis=-1)
        return ops.stack([log_target, log_rest], axis=-1)

    tckd = _kl_rows(binary_log_probs(te), binary_log_probs(s))

    # Removing the target class from the softmax = pushing its logit to -inf.
    def non_target_log_probs(logits):
        return ops.log_softmax(ops.where(target > 0, -1e9, logits), axis=-1)

    nckd = _kl_rows(non_target_log_probs(te), non_target_log_probs(s))
    return _batch_mean(alpha * tckd + beta * nckd, sample_weight) * (t * t)


def _pearson_rows(a, b):
    """Pearson correlation of each row of `a` with the same row of `b`."""
    a = a - ops.mean(a, axis=-1, keepdims=True)
    b = b - ops.mean(b, axis=-1, keepdims=True)
    norms_sq = ops.sum(ops.square(a), axis=-1) * ops.sum(ops.square(b), axis=-1)
    # rsqrt of a clamped product: a constant row gives correlation 0 and a finite gradient.
    return ops.sum(a * b, axis=-1) * ops.rsqrt(ops.maximum(norms_sq, 1e-16))


def dist(student_logits, teacher_logits, labels=None, *, temperature=1.0, beta=1.0, gamma=1.0,
         sample_weight=None):
    """DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022).

    Matches relations instead of exact probabilities, which tolerates the large prediction gap
    of a much stronger teacher. With p = softmax(logits / T):

    - inter-class: 1 - Pearson correlation between p_student[i] and p_teacher[i] across the
      classes, averaged over the examples i;
    - intra-class: 1 - Pearson correlation between p_student[:, c] and p_teacher[:, c] across
      the batch, averaged over the classes c.

    Loss = T^2 * (beta * inter + gamma * intra). The defaults T = 1, beta = gamma = 1 are the
    authors' ImageNet settings. A constant row or column (e.g. a batch of one for the intra
    term) counts as uncorrelated, so its term is 1 with zero gradient.

    Args:
        student_logits: (batch, classes) student logits.
        teacher_logits: (batch, classes) teacher logits.
        labels: unused; accepted so every loss shares one signature.
        temperature: softening temperature T > 0.
        beta: weight of the inter-class term.
        gamma: weight of the intra-class term.
        sample_weight: must be None: the intra-class term correlates the examples of a batch
            with each other, so they cannot be weighted one by one.

    Returns:
        Scalar loss.
    """
    del labels
    if sample_weight is not None:
        raise ValueError("dist compares the examples of a batch with each other (its "
                         "intra-class term correlates each class across the batch) and cannot "
                         "weight them one by one; pass no sample_weight (or use 'kl').")
    t = float(temperature)
    p_student = ops.softmax(ops.cast(student_logits, "float32") / t, axis=-1)
    p_teacher = ops.softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
    inter = 1.0 - ops.mean(_pearson_rows(p_student, p_teacher))
    intra = 1.0 - ops.mean(_pearson_rows(ops.transpose(p_student), ops.transpose(p_teacher)))
    return (beta * inter + gamma * intra) * (t * t)


def cross_entropy(logits, labels, *, sample_weight=None):
    """Softmax cross-entropy of integer `labels` (batch,) against `logits` (batch, classes)."""
    log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    target = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), ops.shape(log_p)[-1])
    return _batch_mean(-ops.sum(target * log_p, axis=-1), sample_weight)


LOSSES = {"kl": kl, "hard": hard, "dkd": dkd, "dist": dist}
