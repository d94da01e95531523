"""tfkd.Distiller: losses, metrics, cross-resolution, saving, errors, DeiT heads, strategies."""

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import losses
from tests.helpers import batch, tiny_cnn


def make_distiller(teacher_size=16, student_size=16, **kwargs):
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn(teacher_size, name="teacher")
    student = tiny_cnn(student_size, name="student")
    distiller = tfkd.Distiller(teacher=teacher, student=student, **kwargs)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    return distiller


# ---------------------------------------------------------------- construction errors


def test_error_when_class_counts_differ():
    with pytest.raises(ValueError, match="teacher outputs 5 classes but the student outputs 3; "
                                         "build the student with num_classes=5"):
        tfkd.Distiller(teacher=tiny_cnn(16, 5), student=tiny_cnn(16, 3))


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_error_when_input_size_is_not_fixed(role):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    free = keras.Model(inputs, keras.layers.Dense(3)(x), name="free")
    models = {"teacher": tiny_cnn(16), "student": tiny_cnn(16), role: free}
    with pytest.raises(ValueError, match=f"The {role} 'free' has no fixed input size.*"
                                         r"keras.Input\(shape=\(height, width, 3\)\)"):
        tfkd.Distiller(**models)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_error_when_a_model_ends_in_softmax(role):
    models = {"teacher": tiny_cnn(16), "student": tiny_cnn(16),
              role: tiny_cnn(16, activation="softmax", name="probs")}
    with pytest.raises(ValueError, match=f"The {role} 'probs' ends in a softmax; tfkd needs "
                                         "logits.*classifier_activation=None"):
        tfkd.Distiller(**models)


def test_error_when_softmax_is_a_separate_layer():
    base = tiny_cnn(16)
    probs = keras.Model(base.input, keras.layers.Softmax()(base.output), name="probs")
    with pytest.raises(ValueError, match="ends in a softmax"):
        tfkd.Distiller(teacher=probs, student=tiny_cnn(16))


@pytest.mark.parametrize("temperature", [0, -1.0, "4"])
def test_error_for_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        tfkd.Distiller(teacher=tiny_cnn(16), student=tiny_cnn(16), temperature=temperature)


@pytest.mark.parametrize("weight", [-0.1, 1.5, None])
def test_error_for_weight_outside_unit_interval(weight):
    with pytest.raises(ValueError, match=r"student_loss_weight must be in \[0, 1\]"):
        tfkd.Distiller(teacher=tiny_cnn(16), student=tiny_cnn(16), student_loss_weight=weight)


def test_error_for_unknown_loss_name():
    with pytest.raises(ValueError, match=r"Unknown distillation_loss 'kld'; use one of "
                                         r"\['dist', 'dkd', 'hard', 'kl'\]"):
        tfkd.Distiller(teacher=tiny_cnn(16), student=tiny_cnn(16), distillation_loss="kld")


def test_error_for_non_model():
    with pytest.raises(TypeError, match="The teacher must be a keras.Model"):
        tfkd.Distiller(teacher="efficientnet_b0", student=tiny_cnn(16))


def test_error_for_student_loss_on_probabilities():
    distiller = tfkd.Distiller(teacher=tiny_cnn(16), student=tiny_cnn(16))
    with pytest.raises(ValueError, match="from_logits=False.*pass from_logits=True"):
        distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy())


# ---------------------------------------------------------------- behaviour


def test_teacher_is_frozen_and_called_in_inference_mode():
    class RefuseTraining(keras.layers.Layer):
        def call(self, x, training=None):
            if training:
                raise AssertionError("teacher called with training=True")
            return x

    teacher = tiny_cnn(16, name="teacher")
    teacher = keras.Model(teacher.input, RefuseTraining()(teacher.output))
    before = [w.copy() for w in teacher.get_weights()]
    distiller = tfkd.Distiller(teacher=teacher, student=tiny_cnn(16))
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    x, y = batch(16)
    distiller.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert teacher.trainable is False
    for w0, w1 in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(w0, w1)  # BN statistics included


def test_fit_and_evaluate_report_the_losses_and_metrics():
    distiller = make_distiller()
    x, y = batch(16)
    history = distiller.fit(x, y, epochs=1, batch_size=4, verbose=0).history
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(history)
    result = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "student_loss", "distillation_loss", "accuracy",
            "teacher_agreement"} <= set(result)
    assert 0.0 <= result["teacher_agreement"] <= 1.0


@pytest.mark.parametrize("name,weight", [("kl", 0.5), ("hard", 0.3), ("dkd", 0.0)])
def test_evaluate_loss_combines_label_and_distillation_losses(name, weight):
    distiller = make_distiller(distillation_loss=name, student_loss_weight=weight,
                               temperature=2.0)
    x, y = batch(16, n=6)
    s = distiller.student(x.astype("float32"), training=False)
    t = distiller.teacher(x.astype("float32"), training=False)
    ce = float(losses.cross_entropy(s, y))
    kd = float(losses.LOSSES[name](s, t, y, temperature=2.0))
    agreement = np.mean(np.argmax(s, -1) == np.argmax(t, -1))
    result = distiller.evaluate(x, y, batch_size=6, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["student_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(result["distillation_loss"], kd, rtol=1e-5)
    np.testing.assert_allclose(result["loss"], weight * ce + (1 - weight) * kd, rtol=1e-5)
    np.testing.assert_allclose(result["teacher_agreement"], agreement)


def test_callable_loss_and_its_kwargs_are_used():
    calls = []

    def scaled_kl(student_logits, teacher_logits, labels, *, temperature, scale):
        calls.append(scale)
        return scale * losses.kl(student_logits, teacher_logits, labels, temperature=temperature)

    distiller = make_distiller(distillation_loss=scaled_kl,
                               distillation_loss_kwargs={"scale": 3.0})
    x, y = batch(16, n=4)
    s = distiller.student(x.astype("float32"))
    t = distiller.teacher(x.astype("float32"))
    result = distiller.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["distillation_loss"],
                               3.0 * float(losses.kl(s, t, None, temperature=4.0)), rtol=1e-5)
    assert calls and set(calls) == {3.0}  # called (at trace time) with the kwargs


def test_sample_weight_reaches_both_losses():
    distiller = make_distiller()
    x, y = batch(16, n=4)
    w = np.array([1.0, 0.0, 0.0, 1.0], "float32")
    s = distiller.student(x.astype("float32"))
    t = distiller.teacher(x.astype("float32"))
    result = distiller.evaluate(x, y, sample_weight=w, batch_size=4, verbose=0,
                                return_dict=True)
    np.testing.assert_allclose(result["student_loss"],
                               float(losses.cross_entropy(s, y, sample_weight=w)), rtol=1e-5)
    np.testing.assert_allclose(result["distillation_loss"],
                               float(losses.kl(s, t, None, temperature=4.0, sample_weight=w)),
                               rtol=1e-5)


def _resize_ops(distiller, data_size):
    fn = tf.function(lambda x: distiller.compute_loss(
        x, tf.zeros([2], "int32"), distiller(x, training=False), training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((2, data_size, data_size, 3), tf.uint8)).graph
    return [op.type for op in graph.get_operations()
            if "Resize" in op.type or "ScaleAndTranslate" in op.type]


def test_same_size_adds_no_resize_op():
    assert _resize_ops(make_distiller(16, 16), 16) == []


def test_cross_resolution_resizes_for_each_model():
    distiller = make_distiller(teacher_size=24, student_size=12)
    assert len(_resize_ops(distiller, 16)) == 2  # up to the teacher, down to the student
    x, y = batch(16)
    history = distiller.fit(x, y, epochs=1, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert distiller.predict(x, verbose=0).shape == (8, 3)


def test_cross_resolution_teacher_sees_the_resized_batch():
    distiller = make_distiller(teacher_size=24, student_size=12)
    x, y = batch(16, n=4)
    t = distiller.teacher(tf.image.resize(x.astype("float32"), (24, 24)), training=False)
    s = distiller.student(tf.image.resize(x.astype("float32"), (12, 12), antialias=True),
                          training=False)
    result = distiller.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["distillation_loss"],
                               float(losses.kl(s, t, None, temperature=4.0)), rtol=1e-4)


@pytest.mark.parametrize("kind, expected", [
    ("softmax", "outputs probabilities on a sample batch"),
    ("log_softmax", "outputs log-probabilities on a sample batch")])
def test_error_when_a_softmax_hides_in_a_lambda_layer(kind, expected):
    base = tiny_cnn(16)
    squash = keras.layers.Lambda(lambda v: getattr(keras.ops, kind)(v))
    hidden = keras.Model(base.input, squash(base.output), name="hidden")
    with pytest.raises(ValueError, match=f"The teacher 'hidden' {expected} .*inside a Lambda "
                                         "layer or a raw op; tfkd needs logits"):
        tfkd.Distiller(teacher=hidden, student=tiny_cnn(16))


@pytest.mark.parametrize("bad, expected", [
    (3, "label 3 at position 5 of a batch is outside \\[0, 3\\): the models have 3 classes; "
        "labels look 1-based"),
    (7, "label 7 at position 5 .* the data has more classes than the models"),
    (-1, "label -1 at position 5 .* drop or fix negative labels")])
def test_a_label_outside_the_classes_is_named_at_its_batch(bad, expected):
    distiller = make_distiller()
    x, y = batch(16)
    y = np.array(y)
    y[5] = bad  # in the first batch: refused there, before the optimizer's first step
    before = [w.numpy().copy() for w in distiller.student.trainable_weights]
    with pytest.raises(ValueError, match=expected):
        distiller.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(before, distiller.student.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())
    with pytest.raises(ValueError, match=expected):
        distiller.evaluate(x, y, batch_size=8, verbose=0)
    y[6] = bad
    with pytest.raises(ValueError, match=rf"label {bad} at position 5 of a batch \(and 1 more "
                                         r"in that batch\) is outside"):
        distiller.train_on_batch(x[:8], y[:8])


def test_labels_are_required():
    distiller = make_distiller()
    x, _ = batch(16)
    with pytest.raises(ValueError, match=r"Distiller needs labels: pass \(images, labels\)"):
        distiller.fit(x, epochs=1, verbose=0)


# ---------------------------------------------------------------- saving


def test_save_load_round_trip_and_training_continues(tmp_path):
    distiller = make_distiller(teacher_size=16, student_size=12, temperature=3.0,
                               student_loss_weight=0.25, distillation_loss="dkd",
                               distillation_loss_kwargs={"beta": 4.0})
    x, y = batch(16)
    distiller.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "d.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode is on by default
    assert isinstance(loaded, tfkd.Distiller)
    assert loaded.temperature == 3.0 and loaded.student_loss_weight == 0.25
    assert loaded.distillation_loss == "dkd" and loaded.teacher.trainable is False
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert int(loaded.optimizer.iterations) == int(distiller.optimizer.iterations) == 2
    expected = distiller.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert int(loaded.optimizer.iterations) == 4


def _kl_twice(student_logits, teacher_logits, labels, *, temperature):
    return 2.0 * losses.kl(student_logits, teacher_logits, labels, temperature=temperature)


def test_saving_with_an_unregistered_loss_says_the_file_will_not_load(tmp_path):
    distiller = make_distiller(distillation_loss=_kl_twice)
    path = tmp_path / "d.keras"
    with pytest.warns(UserWarning, match=r"distillation_loss '_kl_twice' is not registered with "
                                         r"Keras, so keras.saving.load_model will not load this "
                                         r"file: decorate the function with "
                                         r"@keras.saving.register_keras_serializable"):
        distiller.save(path)
    with pytest.raises(Exception, match="Could not locate function '_kl_twice'"):
        keras.saving.load_model(path)  # the warning told the truth


@keras.saving.register_keras_serializable(package="tfkd_tests")
def _kl_registered(student_logits, teacher_logits, labels, *, temperature):
    return losses.kl(student_logits, teacher_logits, labels, temperature=temperature)


def test_saving_with_a_registered_loss_is_silent_and_loads(tmp_path):
    registered = _kl_registered
    distiller = make_distiller(distillation_loss=registered)
    path = tmp_path / "d.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        distiller.save(path)
    assert keras.saving.load_model(path).distillation_loss is registered


def test_saved_student_loads_without_tfkd(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = tfkd.create_model("convnet_s", image_size=16, num_classes=10)
    student = tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=10)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer="adam")
    x, y = batch(32, n=8, num_classes=10)
    distiller.fit(x, y, epochs=1, batch_size=4, verbose=0)
    distiller.student.save(tmp_path / "s.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", distiller.student.predict(x, verbose=0))
    script = textwrap.dedent("""
        import sys, numpy as np, keras
        model = keras.saving.load_model(sys.argv[1] + "/s.keras")
        assert not any(m.startswith("tfkd") for m in sys.modules), "tfkd was imported"
        out = model.predict(np.load(sys.argv[1] + "/x.npy"), verbose=0)
        np.testing.assert_allclose(out, np.load(sys.argv[1] + "/expected.npy"), atol=1e-5)
        print("loaded", type(model).__name__)
    """)
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded Functional" in done.stdout


# ---------------------------------------------------------------- DeiT students


def test_deit_heads_get_label_and_teacher_losses(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn(16, num_classes=10, name="teacher")
    student = tfkd.create_model("deit_tiny", image_size=16, num_classes=10, patch_size=4)
    distiller = tfkd.Distiller(teacher=teacher, student=student, distillation_loss="hard",
                               student_loss_weight=0.5)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    x, y = batch(16, n=4, num_classes=10)
    cls_logits = tf.constant(np.random.default_rng(1).normal(size=(4, 10)), tf.float32)
    dist_logits = tf.constant(np.random.default_rng(2).normal(size=(4, 10)), tf.float32)
    t = teacher(x.astype("float32"), training=False)
    loss = distiller.compute_loss(x, y, (cls_logits, dist_logits), training=True)
    expected = 0.5 * losses.cross_entropy(cls_logits, y) + 0.5 * losses.hard(dist_logits, t)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    # In training the distiller returns both heads; at inference their mean, as the model does.
    cls_head, dist_head = distiller(x, training=True)
    assert cls_head.shape == dist_head.shape == (4, 10)
    np.testing.assert_allclose(distiller.predict(x, verbose=0),
                               student.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    history = distiller.fit(x, y, epochs=2, batch_size=4, verbose=0).history
    assert history["loss"][1] < history["loss"][0]
    distiller.save(tmp_path / "deit.keras")
    loaded = keras.saving.load_model(tmp_path / "deit.keras")
    assert loaded._student_heads is not None  # still trains both heads after loading
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- distribution


def _one_step_loss(strategy, x, y):
    """Loss of one KD step (as fit reports it) and the student's weights after it."""
    with strategy.scope():
        keras.utils.set_random_seed(0)
        # No BatchNormalization: its batch statistics are per replica by design, which would
        # make the two runs differ for a reason unrelated to the Distiller.
        teacher = tiny_cnn(16, batch_norm=False, name="teacher")
        student = tiny_cnn(16, batch_norm=False, name="student")
        distiller = tfkd.Distiller(teacher=teacher, student=student)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    history = distiller.fit(data, epochs=1, verbose=0).history
    return history, student.get_weights()


def test_mirrored_strategy_matches_one_device():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, "conftest.py should configure two logical CPUs"
    x, y = batch(16, n=8, seed=3)
    single, single_weights = _one_step_loss(tf.distribute.get_strategy(), x, y)
    mirrored_strategy = tfkd.distribute.get_strategy("mirrored")
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored, mirrored_weights = _one_step_loss(mirrored_strategy, x, y)
    for key in ("loss", "student_loss", "distillation_loss", "accuracy", "teacher_agreement"):
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, err_msg=key)
    for w1, w2 in zip(single_weights, mirrored_weights):
        np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-6)


def test_compile_creates_the_optimizer_variables_before_the_first_step():
    # Created eagerly rather than while tracing the first step (a faster first epoch); the
    # slots belong to the student's trainable weights only, never to the frozen teacher's.
    distiller = make_distiller()
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert distiller.optimizer.built
    slots = [v for v in distiller.optimizer.variables if len(v.shape)]  # not the scalars
    assert len(slots) == 2 * len(distiller.student.trainable_variables)  # Adam: m and v
    x, y = batch(16)
    before = [v.numpy().copy() for v in distiller.teacher.weights]
    distiller.train_on_batch(x, y)
    for a, b in zip(before, distiller.teacher.weights):
        np.testing.assert_array_equal(a, b.numpy())
