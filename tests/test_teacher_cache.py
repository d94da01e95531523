"""tfkd.TeacherCache: cached logits give the same KD, top-k expansion, staleness, bad input."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd.teacher_cache import StaleCacheError, expand_top_k_numpy
from tests.helpers import batch, tiny_cnn


def base_dataset(n=24, size=16, num_classes=3, seed=0, batch_size=8):
    x, y = batch(size, n=n, num_classes=num_classes, seed=seed)
    return tfkd.data.from_numpy(x, y, image_size=size, batch_size=batch_size)


def teacher(size=16, num_classes=3, seed=1):
    keras.utils.set_random_seed(seed)
    return tiny_cnn(size, num_classes, name="teacher")


def distiller_pair(t, student_size=12):
    """Two Distillers with identical students (same initial weights) and the same teacher."""
    out = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        d = tfkd.Distiller(teacher=t, student=tiny_cnn(student_size, name="student"))
        d.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
        out.append(d)
    return out


def first_batch(ds):
    return next(iter(ds))


# ---------------------------------------------------------------- same KD with and without


def test_cached_and_uncached_kd_give_the_same_loss_and_update(tmp_path):
    t, base = teacher(), base_dataset()
    cache = tfkd.TeacherCache.build(t, base, str(tmp_path / "c.npz"), dtype="float32")
    x, y, logits = first_batch(cache.dataset(base, batch_size=8, shuffle=False))
    uncached, cached = distiller_pair(t)
    # The teacher is resized from 16 to 16 (no-op) in both paths; the student sees 12x12.
    a = uncached.train_on_batch(x, y, return_dict=True)
    b = cached.fit(tf.data.Dataset.from_tensors((x, y, logits)), epochs=1, verbose=0)
    b = {k: v[-1] for k, v in b.history.items()}
    for key in ("loss", "student_loss", "distillation_loss", "teacher_agreement", "accuracy"):
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
    for w1, w2 in zip(uncached.student.weights, cached.student.weights):
        np.testing.assert_allclose(w1.numpy(), w2.numpy(), rtol=1e-5, atol=1e-6)


def test_cached_batches_skip_the_teacher(tmp_path):
    t, base = teacher(), base_dataset()
    cache = tfkd.TeacherCache.build(t, base, str(tmp_path / "c.npz"))
    _, d = distiller_pair(t)
    # A teacher that fails when called proves the cached path never runs it.
    d.teacher.call = lambda *a, **k: (_ for _ in ()).throw(AssertionError("teacher ran"))
    logs = d.fit(cache.dataset(base, batch_size=8), epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    assert "teacher_agreement" in logs


def test_float16_logits_change_the_loss_very_little(tmp_path):
    t, base = teacher(), base_dataset()
    full = tfkd.TeacherCache.build(t, base, str(tmp_path / "32.npz"), dtype="float32")
    half = tfkd.TeacherCache.build(t, base, str(tmp_path / "16.npz"))
    assert half.dtype == "float16"
    assert os.path.getsize(half.path) < os.path.getsize(full.path)
    np.testing.assert_allclose(half.logits(), full.logits(), rtol=1e-3, atol=1e-3)
    student = tf.random.normal((half.count, 3))
    kl32 = tfkd.losses.kl(student, full.logits(), temperature=4.0)
    kl16 = tfkd.losses.kl(student, half.logits(), temperature=4.0)
    assert float(kl16) == pytest.approx(float(kl32), rel=1e-3, abs=1e-5)


def test_sample_weights_are_still_sample_weights():
    # A (batch,) third element is a weight, not logits: the teacher runs and zero weights
    # make a zero loss.
    t = teacher()
    _, d = distiller_pair(t)
    x, y = batch(16, n=8)
    logs = d.evaluate(x, y, sample_weight=np.zeros(8, "float32"), verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(0.0, abs=1e-7)


def test_cached_dataset_keeps_the_order_of_tfkd_data(tmp_path):
    x, y = batch(16, n=40, seed=3)
    base = tfkd.data.from_numpy(x, y, image_size=16, batch_size=8)
    cache = tfkd.TeacherCache.build(teacher(), base, str(tmp_path / "c.npz"))
    shuffled = tfkd.data.from_numpy(x, y, image_size=16, batch_size=8, shuffle=True, seed=5)
    cached = cache.dataset(base, batch_size=8, seed=5)
    for epoch in range(2):  # reshuffled alike every epoch
        a = np.concatenate([b[1] for b in shuffled.as_numpy_iterator()])
        c = np.concatenate([b[1] for b in cached.as_numpy_iterator()])
        np.testing.assert_array_equal(a, c, err_msg=f"epoch {epoch}")


def test_each_example_keeps_its_own_logits_after_shuffling(tmp_path):
    t, base = teacher(), base_dataset(n=40)
    cache = tfkd.TeacherCache.build(t, base, str(tmp_path / "c.npz"), dtype="float32")
    for x, _, logits in cache.dataset(base, batch_size=8, seed=2):
        np.testing.assert_allclose(t.predict(x, verbose=0), logits, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- top-k


def reference_expand(values, indices, num_classes):
    """TinyViT's expansion written out by hand: kept probabilities, the rest spread evenly."""
    out = np.empty((len(values), num_classes))
    for row, (v, idx) in enumerate(zip(values, indices)):
        kept = np.exp(v.astype(np.float64))
        rest = max(1.0 - kept.sum(), 0.0) / (num_classes - len(idx))
        probs = np.full(num_classes, max(rest, 1e-8))
        probs[idx] = kept
        out[row] = np.log(probs)
    return out


def test_top_k_expansion_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10)) * 3
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    indices = np.argsort(-log_probs, axis=-1)[:, :4]
    values = np.take_along_axis(log_probs, indices, -1).astype("float32")
    got = expand_top_k_numpy(values, indices.astype("int16"), 10)
    np.testing.assert_allclose(got, reference_expand(values, indices, 10), rtol=1e-5,
                               atol=1e-5)
    probs = np.exp(got)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_top_k_expansion_keeps_rows_finite_when_the_top_k_hold_all_mass():
    values = np.log(np.array([[0.5, 0.5]], "float32"))
    got = expand_top_k_numpy(values, np.array([[1, 3]]), 4)
    assert np.isfinite(got).all()
    assert np.exp(got[0, [0, 2]]) == pytest.approx(1e-8)


def test_top_k_cache_stores_the_teachers_largest_probabilities(tmp_path):
    t, base = teacher(num_classes=6), base_dataset(num_classes=6)
    cache = tfkd.TeacherCache.build(t, base, str(tmp_path / "k.npz"), top_k=2,
                                    dtype="float32")
    probs = tf.nn.softmax(t.predict(base.map(lambda x, y: x), verbose=0)).numpy()
    expanded = np.exp(cache.logits())
    top2 = np.argsort(-probs, axis=-1)[:, :2]
    np.testing.assert_allclose(np.take_along_axis(expanded, top2, -1),
                               np.take_along_axis(probs, top2, -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(expanded.sum(-1), 1.0, rtol=1e-5)
    _, _, logits = first_batch(cache.dataset(base, batch_size=4, shuffle=False))
    np.testing.assert_allclose(logits, cache.logits()[:4], rtol=1e-6)


# ---------------------------------------------------------------- reuse and staleness


def test_build_reuses_a_matching_cache_without_running_the_teacher(tmp_path, capsys):
    t, base, path = teacher(), base_dataset(), str(tmp_path / "c.npz")
    first = tfkd.TeacherCache.build(t, base, path)
    t.predict = None  # calling it would fail
    again = tfkd.TeacherCache.build(t, base, path)
    assert "reusing" in capsys.readouterr().out
    assert again.key == first.key
    np.testing.assert_array_equal(again.logits(), first.logits())


def test_a_changed_teacher_invalidates_the_cache(tmp_path, capsys):
    t, base, path = teacher(), base_dataset(), str(tmp_path / "c.npz")
    old = tfkd.TeacherCache.build(t, base, path, dtype="float32")
    kernel = t.layers[-1].kernel
    kernel.assign(kernel.numpy() + 1.0)
    with pytest.raises(StaleCacheError, match="built from another teacher.*rebuild it with "
                                              r"tfkd.TeacherCache.build"):
        tfkd.TeacherCache.load(path, teacher=t)
    capsys.readouterr()
    new = tfkd.TeacherCache.build(t, base, path, dtype="float32")
    out = capsys.readouterr().out
    assert "rebuilding" in out and "the teacher changed" in out
    assert new.key != old.key and new.teacher_hash != old.teacher_hash
    want = t.predict(base.map(lambda x, y: x), verbose=0)
    np.testing.assert_allclose(new.logits(), want, rtol=1e-5, atol=1e-5)
    assert tfkd.TeacherCache.load(path, teacher=t).key == new.key


def test_rebuild_says_why(tmp_path, capsys):
    t, path = teacher(), str(tmp_path / "c.npz")
    tfkd.TeacherCache.build(t, base_dataset(seed=0), path)
    capsys.readouterr()
    tfkd.TeacherCache.build(t, base_dataset(seed=1), path)
    assert "rebuilding" in capsys.readouterr().out
    tfkd.TeacherCache.build(t, base_dataset(seed=1), path, top_k=2)
    assert "top_k changed" in capsys.readouterr().out


def test_other_data_is_refused(tmp_path):
    t = teacher()
    cache = tfkd.TeacherCache.build(t, base_dataset(seed=0), str(tmp_path / "c.npz"))
    with pytest.raises(StaleCacheError, match="built from other data.*shuffle=False"):
        cache.dataset(base_dataset(seed=1), batch_size=8)
    x, y = batch(16, n=24, seed=0)
    shuffled = tfkd.data.from_numpy(x, y, image_size=16, batch_size=8, shuffle=True, seed=3)
    with pytest.raises(StaleCacheError, match="order differ"):
        cache.dataset(shuffled, batch_size=8)


def test_write_is_atomic(tmp_path, monkeypatch):
    t, base, path = teacher(), base_dataset(), str(tmp_path / "c.npz")
    tfkd.TeacherCache.build(t, base, path)
    before = open(path, "rb").read()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tfkd.TeacherCache.build(t, base, path, top_k=2)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_under_mirrored_strategy_cached_kd_matches_one_device(tmp_path):
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py sets up two logical CPUs"
    base = base_dataset(n=16)
    losses = []
    for strategy in (tf.distribute.get_strategy(), tfkd.distribute.get_strategy("mirrored")):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            # No BatchNorm: per-replica batch statistics would differ from the global batch's.
            t = tiny_cnn(16, batch_norm=False, name="teacher")
            keras.utils.set_random_seed(7)
            s = tiny_cnn(12, batch_norm=False, name="student")
            cache = tfkd.TeacherCache.build(t, base, str(tmp_path / "c.npz"), verbose=False)
            d = tfkd.Distiller(teacher=t, student=s)
            d.compile(optimizer=keras.optimizers.SGD(0.1))
        logs = d.fit(cache.dataset(base, batch_size=16, shuffle=False), epochs=1, verbose=0)
        losses.append((logs.history["loss"][0], [w.numpy() for w in s.weights]))
    assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-5)
    for a, b in zip(losses[0][1], losses[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "c.bin"}, "must end in .npz"),
    ({"top_k": 3}, r"top_k must be an integer in \[1, 2\]"),
    ({"top_k": 0}, r"top_k must be an integer in \[1, 2\]"),
    ({"dtype": "int8"}, "dtype must be 'float16' or 'float32'"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"path": "c.npz", **kwargs}
    args["path"] = str(tmp_path / args["path"])
    with pytest.raises(ValueError, match=message):
        tfkd.TeacherCache.build(teacher(), base_dataset(), **args)


@pytest.mark.parametrize("make, message", [
    (lambda: base_dataset().repeat(), r"infinite \(.repeat\(\)\?\)"),
    (lambda: base_dataset().map(lambda x, y: x), r"must yield \(images, labels\)"),
    (lambda: base_dataset().take(0), "empty"),
    (lambda: np.zeros((4, 16, 16, 3)), "Expected a tf.data.Dataset"),
])
def test_bad_datasets(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        tfkd.TeacherCache.build(teacher(), make(), str(tmp_path / "c.npz"))


def test_teacher_without_fixed_size_is_refused(tmp_path):
    inputs = keras.Input((None, None, 3))
    free = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(
        inputs)))
    with pytest.raises(ValueError, match="The teacher .* has no fixed input size.*"
                                         r"tfkd.create_model\(name, image_size="):
        tfkd.TeacherCache.build(free, base_dataset(), str(tmp_path / "c.npz"))


def test_softmax_teacher_is_refused(tmp_path):
    # Caching probabilities would soften them a second time in the KD loss.
    probs = tiny_cnn(16, activation="softmax", name="probs")
    with pytest.raises(ValueError, match="The teacher 'probs' ends in a softmax; tfkd needs "
                                         "logits"):
        tfkd.TeacherCache.build(probs, base_dataset(), str(tmp_path / "c.npz"))
    assert not os.listdir(tmp_path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No teacher cache.*TeacherCache.build"):
        tfkd.TeacherCache.load(str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable teacher cache.*delete it"):
        tfkd.TeacherCache.load(str(bad))
    # build() replaces what it cannot read, and says so.
    cache = tfkd.TeacherCache.build(teacher(), base_dataset(), str(bad))
    assert cache.count == 24
    assert tfkd.TeacherCache.load(str(bad)).key == cache.key
