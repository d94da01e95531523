"""Per-layer int8 diagnosis and selective float export, on real converters and LiteRT."""

import pytest
import tensorflow as tf

import tfkd
from tests.helpers import batch
from tfkd import tflite_file


@pytest.fixture(scope="module")
def vit():
    """A tiny ViT trained a few steps (random weights quantize unlike trained ones), and data."""
    import keras
    keras.utils.set_random_seed(0)
    model = tfkd.create_model("vit_micro", image_size=16, num_classes=3)
    x, y = batch(16, n=96, num_classes=3)
    x[y == 1] //= 3  # learnable: class 1 is darker
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, epochs=2, verbose=0)
    return model, data


def test_diagnose_ranks_every_quantized_tensor_and_measures_the_drop(vit):
    model, data = vit
    diagnosis = tfkd.quantization.diagnose(model, data, representative_data=data,
                                           debug_samples=16)
    errors = [layer.error for layer in diagnosis.layers]
    assert len(errors) > 20 and errors == sorted(errors, reverse=True)  # worst first
    assert all(e >= 0 for e in errors) and errors[0] > 0
    ops = {layer.op for layer in diagnosis.layers}
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= ops
    layers = {layer.name for layer in model.layers}
    assert any(layer.layer in layers for layer in diagnosis.layers)  # named after Keras layers
    assert diagnosis.count == 96
    assert diagnosis.drop_points == pytest.approx(
        100 * (diagnosis.float_accuracy - diagnosis.int8_accuracy))
    assert diagnosis.worst(2) == [layer.tensor for layer in diagnosis.layers[:2]]
    assert diagnosis.to_rows()[0]["error"] == errors[0]


def test_keep_float_leaves_op_types_tensors_and_layers_in_float(vit, tmp_path):
    model, data = vit
    plain = tfkd.export.to_tflite(model, str(tmp_path / "plain.tflite"), representative_data=data)
    assert "SOFTMAX" not in plain.float_ops and plain.kept_float == {}
    kept = tfkd.export.to_tflite(model, str(tmp_path / "soft.tflite"), representative_data=data,
                                 keep_float=["SOFTMAX"])
    assert "SOFTMAX" in kept.float_ops and kept.kept_float == {"ops": ["SOFTMAX"],
                                                               "tensors": []}
    assert kept.input_dtype == "int8" and kept.output_dtype == "int8"  # camera pixels in
    check = tfkd.export.evaluate_tflite(kept.path, data, keras_model=model)
    assert check.agreement > 0.8

    diagnosis = tfkd.quantization.diagnose(model, data, representative_data=data,
                                           debug_samples=8)
    worst = diagnosis.worst(1)
    by_tensor = tfkd.export.to_tflite(model, str(tmp_path / "worst.tflite"),
                                      representative_data=data, keep_float=worst)
    assert by_tensor.kept_float["tensors"] == worst
    assert diagnosis.layers[0].op in by_tensor.float_ops
    by_layer = tfkd.export.to_tflite(model, str(tmp_path / "norm.tflite"),
                                     representative_data=data, keep_float=["block0_norm1"])
    assert len(by_layer.kept_float["tensors"]) > 1
    assert all("block0_norm1" in name for name in by_layer.kept_float["tensors"])
    assert {"MEAN", "RSQRT"} <= set(by_layer.float_ops)
    names = {name for _, outputs in tflite_file.op_outputs(
        open(by_layer.path, "rb").read()) for name in outputs}
    assert set(by_layer.kept_float["tensors"]) <= names


def test_keep_float_mistakes(vit, tmp_path):
    model, data = vit
    with pytest.raises(ValueError, match=r"'nope' is not an op type, tensor or layer of "
                                         r"vit_micro.*op types: \[.*'SOFTMAX'.*layers: \["):
        tfkd.export.to_tflite(model, str(tmp_path / "a.tflite"), representative_data=data,
                              keep_float=["nope"])
    with pytest.raises(ValueError, match="keep_float applies to full-integer exports"):
        tfkd.export.to_tflite(model, str(tmp_path / "a.tflite"), quantization="dynamic",
                              keep_float=["SOFTMAX"])
    with pytest.raises(ValueError, match="keep_float must be a list"):
        tfkd.export.to_tflite(model, str(tmp_path / "a.tflite"), representative_data=data,
                              keep_float="SOFTMAX")
    assert not list(tmp_path.iterdir()), "a refused export leaves no file"
