"""Quantization-aware training: fake quantization where the converter quantizes, trained with
fit and under the Distiller, shipped with the learned ranges."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tests.helpers import batch
from tfkd import qat


def _data(size, n=64):
    x, y = batch(size, n=n, num_classes=3)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def test_the_learned_ranges_are_the_shipped_ones(tmp_path):
    keras.utils.set_random_seed(0)
    student = tfkd.create_model("convnet_s", image_size=16, num_classes=3)
    data = _data(16)
    model = qat.quantize_model(student, data, num_calibration_samples=32)
    assert model.name == "convnet_s_qat"
    shared = {id(w) for w in student.weights}
    assert all(id(w) in shared for w in model.weights if "range_" not in w.path
               and "seen" not in w.path)  # the student's own layers, not copies
    names = [layer.name for layer in qat.fake_quant_layers(model)]
    # Conv -> BN -> ReLU is one op in TFLite: one range after the ReLU, none in between.
    convs = [layer.name for layer in student.layers if isinstance(layer, keras.layers.Conv2D)]
    assert names and not any(f"{conv}_fq" in names for conv in convs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in student.trainable_weights]
    model.fit(data, epochs=1, verbose=0)
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, student.trainable_weights))
    exported = tfkd.export.to_tflite(model, str(tmp_path / "q.tflite"), representative_data=data)
    head = model.get_layer(f"{student.layers[-1].name}_fq")  # the logits' range
    low = min(float(head.range_min.numpy()), 0.0)
    expected = (float(head.range_max.numpy()) - low) / 255
    assert exported.outputs[0].scale == pytest.approx(expected, rel=1e-5)
    assert exported.input_dtype == "int8" and exported.float_ops == []


def test_qat_under_the_distiller_saves_and_reloads(tmp_path):
    teacher = tfkd.create_model("convnet_s", image_size=16, num_classes=3)
    data = _data(16)
    student = qat.quantize_model(tfkd.create_model("convnet_s", image_size=16, num_classes=3),
                                 data, num_calibration_samples=16)
    ranges = [float(layer.range_max.numpy()) for layer in qat.fake_quant_layers(student)]
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    distiller.fit(data, epochs=1, verbose=0)
    after = [float(layer.range_max.numpy()) for layer in qat.fake_quant_layers(student)]
    assert after != ranges  # the ranges follow training
    student.save(tmp_path / "qat.keras")
    again = tfkd.models.load_model(tmp_path / "qat.keras")
    x, _ = batch(16, n=4)
    np.testing.assert_allclose(again(x), student(x), rtol=1e-5, atol=1e-6)


def test_fused_patterns_stay_integer(tmp_path):
    """MobileNetV3's hard-swish and hard-sigmoid pieces keep the converter's own ranges, so
    the file has no float islands."""
    data = _data(32, n=16)
    model = qat.quantize_model(tfkd.create_model("mobilenetv3_small", image_size=32,
                                                 num_classes=3), data, num_calibration_samples=16)
    exported = tfkd.export.to_tflite(model, str(tmp_path / "m.tflite"), representative_data=data,
                                     num_calibration_samples=16)
    assert exported.float_ops == [] and "HARD_SWISH" in exported.op_counts


def test_a_subclassed_model_is_refused():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    model = Tiny()
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="quantize_model needs a functional keras.Model"):
        qat.quantize_model(model, np.zeros((4, 8, 8, 3), "float32"))


def test_finetune_after_kd_has_a_kd_qat_mode(tmp_path):
    from tfkd.recipes import finetune_after_kd

    rows = finetune_after_kd.run(finetune_after_kd.Config(
        data_size=16, teacher="convnet_s", teacher_size=16, student="convnet_s",
        student_size=16, limit=256, teacher_limit=256, test_limit=128, teacher_epochs=1,
        kd_epochs=1, ft_epochs=1, qat=True, targets=(), verbose=0, output_dir=str(tmp_path)))
    by_mode = {row["mode"]: row for row in rows}
    assert set(by_mode) == {"kd-stage", "kd+ft", "kd+qat", "kd", "scratch"}
    run = by_mode["kd+qat"]
    assert run["teacher"] == "convnet_s" and run["epochs"] == 1
    assert run["tflite"]["int8"]["passed"] and run["tflite"]["int8"]["float_ops"] == []
    saved = tfkd.models.load_model(tmp_path / "finetune_after_kd" / "default" / "runs" /
                                   run["run_id"] / "student.keras")
    assert qat.fake_quant_layers(saved)  # the shipped student is the quantization-aware one


def test_a_deit_student_trains_quantization_aware_under_its_float_self(tmp_path):
    """QAT as the README shows it, on a DeiT: the quantized model shares the float model's
    layers, and its two heads (class and distillation) must come from its own graph, not the
    float model's."""
    data = _data(32)
    float_model = tfkd.create_model("deit_micro", image_size=32, num_classes=3)
    float_model.save(tmp_path / "float.keras")
    teacher = tfkd.models.load_model(tmp_path / "float.keras")
    student = qat.quantize_model(float_model, data, num_calibration_samples=16)
    heads = tfkd.models.distillation_heads(student)
    assert heads.inputs[0] is student.inputs[0]
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-4))
    history = distiller.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    exported = tfkd.export.to_tflite(student, str(tmp_path / "deit_qat.tflite"),
                                     representative_data=data)
    assert exported.input_dtype == "int8"
