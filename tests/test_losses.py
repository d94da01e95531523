"""Each loss against a value computed independently in numpy on a fixed small batch."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd import losses

STUDENT = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [-0.5, 1.5, 0.0]], "float32")
TEACHER = np.array([[3.0, -1.0, 0.0], [0.0, 2.5, 1.0], [1.0, 2.0, -2.0]], "float32")
LABELS = np.array([0, 2, 1])


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    """Row-wise KL(p || q) for probability rows, skipping p == 0 entries."""
    mask = p > 0
    return np.array([np.sum(pi[m] * np.log(pi[m] / qi[m])) for pi, qi, m in zip(p, q, mask)])


def test_kl_matches_numpy():
    t = 4.0
    expected = np.mean(np_kl(np_softmax(TEACHER / t), np_softmax(STUDENT / t))) * t * t
    got = float(losses.kl(STUDENT, TEACHER, LABELS, temperature=t))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kl_is_zero_for_identical_logits_and_positive_otherwise():
    assert abs(float(losses.kl(TEACHER, TEACHER, None, temperature=2.0))) < 1e-6
    assert float(losses.kl(STUDENT, TEACHER, None, temperature=2.0)) > 0.01


def test_kl_sample_weight_follows_keras_reduction():
    w = np.array([1.0, 0.0, 2.0], "float32")
    t = 2.0
    rows = np_kl(np_softmax(TEACHER / t), np_softmax(STUDENT / t))
    expected = np.sum(rows * w) / 3 * t * t  # weighted sum over the batch size
    got = float(losses.kl(STUDENT, TEACHER, None, temperature=t, sample_weight=w))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_hard_is_cross_entropy_on_teacher_argmax():
    teacher_top1 = TEACHER.argmax(axis=1)  # [0, 1, 1]
    p = np_softmax(STUDENT)
    expected = -np.mean(np.log(p[np.arange(3), teacher_top1]))
    got = float(losses.hard(STUDENT, TEACHER, LABELS))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def np_dkd(s, t, labels, temp, alpha, beta):
    """DKD written out from the paper's definitions, one example at a time."""
    total = 0.0
    for si, ti, y in zip(s, t, labels):
        ps, pt = np_softmax(si / temp), np_softmax(ti / temp)
        bs = np.array([ps[y], 1 - ps[y]])
        bt = np.array([pt[y], 1 - pt[y]])
        tckd = np.sum(bt * np.log(bt / bs))
        others = [j for j in range(len(si)) if j != y]
        qs, qt = ps[others] / ps[others].sum(), pt[others] / pt[others].sum()
        nckd = np.sum(qt * np.log(qt / qs))
        total += alpha * tckd + beta * nckd
    return total / len(labels) * temp * temp


@pytest.mark.parametrize("alpha,beta,temp", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_numpy(alpha, beta, temp):
    expected = np_dkd(STUDENT, TEACHER, LABELS, temp, alpha, beta)
    got = float(losses.dkd(STUDENT, TEACHER, LABELS, temperature=temp, alpha=alpha, beta=beta))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_dkd_needs_labels():
    with pytest.raises(ValueError, match="needs the ground-truth labels"):
        losses.dkd(STUDENT, TEACHER, None)


def test_cross_entropy_matches_numpy():
    p = np_softmax(STUDENT)
    expected = -np.mean(np.log(p[np.arange(3), LABELS]))
    np.testing.assert_allclose(float(losses.cross_entropy(STUDENT, LABELS)), expected, rtol=1e-5)


def np_dist(s, t, temp, beta, gamma):
    """DIST from the paper's definitions: 1 - Pearson r per example and per class."""
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    inter = np.mean([1 - np.corrcoef(a, b)[0, 1] for a, b in zip(ps, pt)])
    intra = np.mean([1 - np.corrcoef(ps[:, c], pt[:, c])[0, 1] for c in range(s.shape[1])])
    return temp * temp * (beta * inter + gamma * intra)


@pytest.mark.parametrize("beta,gamma,temp", [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist_matches_numpy(beta, gamma, temp):
    expected = np_dist(STUDENT, TEACHER, temp, beta, gamma)
    got = float(losses.dist(STUDENT, TEACHER, LABELS, temperature=temp, beta=beta, gamma=gamma))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_dist_is_zero_for_identical_logits_and_invariant_to_shifting_them():
    assert abs(float(losses.dist(TEACHER, TEACHER))) < 1e-5
    np.testing.assert_allclose(float(losses.dist(STUDENT + 3.0, TEACHER)),
                               float(losses.dist(STUDENT, TEACHER)), rtol=1e-5)


def test_dist_gradient_is_finite_for_a_batch_of_one():
    variable = tf.Variable(STUDENT[:1])
    with tf.GradientTape() as tape:
        loss = losses.dist(variable, TEACHER[:1])
    grad = tape.gradient(loss, variable).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_dist_rejects_sample_weight():
    with pytest.raises(ValueError, match="dist compares the examples of a batch with each other"
                                         ".*pass no sample_weight"):
        losses.dist(STUDENT, TEACHER, sample_weight=np.ones(3, "float32"))


def test_losses_table_names():
    assert set(losses.LOSSES) == {"kl", "hard", "dkd", "dist"}
    assert all(callable(f) for f in losses.LOSSES.values())
