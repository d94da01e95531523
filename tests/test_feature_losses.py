"""Each feature loss against an independent numpy version, written from the papers' definitions
with explicit loops, on a fixed small batch; plus properties that hold by construction."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from tfkd import feature_losses as fl

RNG = np.random.default_rng(7)
STUDENT = RNG.normal(size=(3, 4, 4, 6))  # (batch, height, width, channels)
TEACHER = RNG.normal(size=(3, 4, 4, 8)) * 2.0 + 0.5  # other channels and scale
TEACHER_SAME = RNG.normal(size=(3, 4, 4, 6))  # the student's shape, for hint


def f32(x):
    return np.asarray(x, "float32")


def value(name_or_fn, s, t, **kw):
    fn = fl.FEATURE_LOSSES.get(name_or_fn, name_or_fn)
    return float(fn(f32(s), f32(t), **kw))


def positions(x):
    """Per example, the (positions, channels) matrix of one feature map, row-major."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def np_huber(x):
    return 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5


def np_hint(s, t):
    return np.mean([np.mean((si - ti) ** 2) for si, ti in zip(s, t)])


def np_attention(s, t, p):
    total = 0.0
    for si, ti in zip(positions(s), positions(t)):
        maps = []
        for x in (si, ti):
            a = np.array([np.mean(np.abs(row) ** p) for row in x])
            maps.append(a / math.sqrt(sum(v * v for v in a)))
        total += sum((u - v) ** 2 for u, v in zip(*maps))
    return total / len(s)


def np_relations(x, heads):
    """(N, C) -> per head, the row-softmax of scaled dot products between positions."""
    n, c = x.shape
    d = c // heads
    out = np.zeros((heads, n, n))
    for h in range(heads):
        xh = x[:, h * d:(h + 1) * d]
        for i in range(n):
            logits = np.array([xh[i] @ xh[j] for j in range(n)]) / math.sqrt(d)
            e = np.exp(logits - logits.max())
            out[h, i] = e / e.sum()
    return out


def np_token_relation(s, t, heads):
    per_example = []
    for si, ti in zip(positions(s), positions(t)):
        rs, rt = np_relations(si, heads), np_relations(ti, heads)
        kls = [np.sum(rt[h, i] * np.log(rt[h, i] / rs[h, i]))
               for h in range(heads) for i in range(rs.shape[1])]
        per_example.append(np.mean(kls))
    return np.mean(per_example)


def np_rkd(s, t, distance_weight=1.0, angle_weight=2.0):
    es, et = positions(s).mean(axis=1), positions(t).mean(axis=1)
    b = len(es)
    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]

    def distances(e):
        d = {(i, j): np.linalg.norm(e[i] - e[j]) for i, j in pairs}
        mean = np.mean(list(d.values()))
        return {k: v / mean for k, v in d.items()}

    ds, dt = distances(es), distances(et)
    distance = np.mean([np_huber(ds[k] - dt[k]) for k in pairs])

    def cosine(e, i, j, k):
        u, v = e[i] - e[j], e[k] - e[j]
        return (u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))

    triplets = list(itertools.permutations(range(b), 3))
    angle = np.mean([np_huber(cosine(es, *x) - cosine(et, *x)) for x in triplets])
    return distance_weight * distance + angle_weight * angle


def test_hint_matches_numpy():
    np.testing.assert_allclose(value("hint", STUDENT, TEACHER_SAME),
                               np_hint(STUDENT, TEACHER_SAME), rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_attention_matches_numpy(p):
    np.testing.assert_allclose(value("attention", STUDENT, TEACHER, p=p),
                               np_attention(STUDENT, TEACHER, p), rtol=1e-5)


def test_attention_is_a_squared_distance_of_unit_maps():
    got = value("attention", STUDENT, TEACHER)
    assert 0.0 < got <= 2.0


@pytest.mark.parametrize("heads", [1, 2])
def test_token_relation_matches_numpy(heads):
    s, t = STUDENT[:, :2, :3], TEACHER[:, :2, :3] * 0.5  # 6 positions, softmax not saturated
    np.testing.assert_allclose(value("relation", s, t, heads=heads),
                               np_token_relation(s, t, heads), rtol=1e-5)


def test_relational_matches_numpy():
    s, t = RNG.normal(size=(5, 3, 6)), RNG.normal(size=(5, 2, 2, 9))  # positions may differ
    np.testing.assert_allclose(value("rkd", s, t), np_rkd(s, t), rtol=1e-5)
    np.testing.assert_allclose(value("rkd", s, t, distance_weight=0.5, angle_weight=0.0),
                               np_rkd(s, t, 0.5, 0.0), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(fl.FEATURE_LOSSES))
def test_zero_when_student_equals_teacher(name):
    assert abs(value(name, TEACHER, TEACHER)) < 1e-6
    assert value(name, STUDENT, TEACHER_SAME) > 1e-3


@pytest.mark.parametrize("name,invariant", [("attention", True), ("rkd", True),
                                            ("relation", False)])
def test_positive_scale_of_the_student(name, invariant):
    base = value(name, STUDENT, TEACHER)
    scaled = value(name, STUDENT * 7.5, TEACHER)
    if invariant:
        np.testing.assert_allclose(scaled, base, rtol=1e-5)
    else:
        assert abs(scaled - base) > 1e-2 * base


@pytest.mark.parametrize("name", ["hint", "attention", "relation"])
def test_sample_weight_follows_keras_reduction(name):
    teacher = TEACHER_SAME if name == "hint" else TEACHER
    kept = [value(name, STUDENT[[i]], teacher[[i]]) for i in (0, 2)]
    got = value(name, STUDENT, teacher, sample_weight=f32([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(got, np.mean(kept) * 2 / 3, rtol=1e-5)


def test_sample_weight_of_shape_batch_by_one():
    w = f32([[2.0], [0.5], [1.0]])
    np.testing.assert_allclose(
        value("hint", STUDENT, TEACHER_SAME, sample_weight=w),
        np.mean([wi * np.mean((s - t) ** 2) for wi, s, t in zip(w[:, 0], STUDENT, TEACHER_SAME)]),
        rtol=1e-5)


@pytest.mark.parametrize("name", sorted(fl.FEATURE_LOSSES))
def test_gradient_is_finite_even_for_degenerate_features(name):
    student = STUDENT.copy()
    student[1] = 0.0  # an all-zero map: zero attention norm
    student[2] = student[0]  # duplicate examples: zero distance
    teacher = TEACHER_SAME if name == "hint" else TEACHER
    variable = tf.Variable(f32(student))
    with tf.GradientTape() as tape:
        loss = fl.FEATURE_LOSSES[name](variable, f32(teacher))
    grad = tape.gradient(loss, variable)
    assert np.isfinite(float(loss))
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert np.any(grad.numpy() != 0)


def features_of_rank(rank, channels):
    shape = {2: (3, channels), 3: (3, 4, channels), 4: (3, 2, 2, channels)}[rank]
    return RNG.normal(size=shape)


@pytest.mark.parametrize("name,ranks", [("hint", (2, 3, 4)), ("rkd", (2, 3, 4)),
                                        ("attention", (3, 4)), ("relation", (3, 4))])
def test_accepted_ranks(name, ranks):
    for rank in (2, 3, 4):
        s = features_of_rank(rank, 4)
        t = s * 0.5 if name == "hint" else features_of_rank(rank, 8)
        if rank in ranks:
            got = fl.FEATURE_LOSSES[name](np.float16(s), f32(t))
            assert got.dtype == "float32" and np.isfinite(float(got))
        else:
            with pytest.raises(ValueError, match="compares positions.*use 'hint' or 'rkd'"):
                fl.FEATURE_LOSSES[name](f32(s), f32(t))


@pytest.mark.parametrize("name", sorted(fl.FEATURE_LOSSES))
def test_unknown_static_dimensions_skip_the_checks(name):
    fn = fl.FEATURE_LOSSES[name]
    teacher = TEACHER_SAME if name == "hint" else TEACHER
    traced = tf.function(lambda s, t: fn(s, t), input_signature=[
        tf.TensorSpec((None, None, None, 6)), tf.TensorSpec((None, None, None, None))])
    np.testing.assert_allclose(float(traced(f32(STUDENT), f32(teacher))),
                               value(name, STUDENT, teacher), rtol=1e-5)


def test_relational_on_tiny_batches_is_finite():
    one = value("rkd", STUDENT[:1], TEACHER[:1])
    two = value("rkd", STUDENT[:2], TEACHER[:2])
    assert one == 0.0
    assert np.isfinite(two) and two >= 0.0


def test_rank_below_two_is_rejected():
    with pytest.raises(ValueError, match=r"rank >= 2\), got student \(3,\) and teacher \(3,\)"):
        fl.hint(f32([1, 2, 3]), f32([1, 2, 3]))


@pytest.mark.parametrize("name", sorted(fl.FEATURE_LOSSES))
def test_batch_mismatch_is_rejected(name):
    teacher = TEACHER_SAME if name == "hint" else TEACHER
    with pytest.raises(ValueError, match="student's batch has 2 and the teacher's 3.*same batch"):
        fl.FEATURE_LOSSES[name](f32(STUDENT[:2]), f32(teacher))


@pytest.mark.parametrize("name", ["attention", "relation"])
def test_position_mismatch_is_rejected(name):
    with pytest.raises(ValueError, match=r"student positions \(4, 4\) and teacher positions "
                                         r"\(2, 8\).*resize"):
        fl.FEATURE_LOSSES[name](f32(STUDENT), f32(TEACHER.reshape(3, 2, 8, 8)))


def test_hint_shape_mismatch_says_to_project():
    with pytest.raises(ValueError, match=r"hint needs equal shapes, got student \(3, 4, 4, 6\) "
                                         r"and teacher \(3, 4, 4, 8\).*1x1 projection"):
        fl.hint(f32(STUDENT), f32(TEACHER))


@pytest.mark.parametrize("heads", [0, -2, 1.5, True, "2"])
def test_token_relation_heads_must_be_a_positive_int(heads):
    with pytest.raises(ValueError, match="heads to be a positive int"):
        fl.token_relation(f32(STUDENT), f32(TEACHER), heads=heads)


def test_token_relation_accepts_numpy_integer_heads():
    s, t = STUDENT[:, :2, :3], TEACHER[:, :2, :3] * 0.5
    np.testing.assert_allclose(value("relation", s, t, heads=np.int64(2)),
                               np_token_relation(s, t, 2), rtol=1e-5)


def test_token_relation_heads_must_divide_the_channels():
    with pytest.raises(ValueError, match=r"heads=4 relation heads, but the student has 6 "
                                         r"channels and the teacher 8.*heads=2 \(common "
                                         r"divisors: 1, 2\)"):
        fl.token_relation(f32(STUDENT), f32(TEACHER), heads=4)


@pytest.mark.parametrize("p", [0.5, 0, "2"])
def test_attention_exponent_must_be_at_least_one(p):
    with pytest.raises(ValueError, match="exponent p >= 1"):
        fl.attention_transfer(f32(STUDENT), f32(TEACHER), p=p)


def test_relational_rejects_sample_weight():
    with pytest.raises(ValueError, match="compares the examples of a batch with each other.*"
                                         "pass no sample_weight"):
        fl.relational(f32(STUDENT), f32(TEACHER), sample_weight=f32([1, 1, 1]))


def test_feature_losses_table():
    assert fl.FEATURE_LOSSES == {"hint": fl.hint, "attention": fl.attention_transfer,
                                 "relation": fl.token_relation, "rkd": fl.relational}
