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
    with pytest.raises(ValueError, match=r"quantization='auto' chooses.*export_and_check"):
        tfkd.export.to_tflite(model, str(tmp_path / "a.tflite"), quantization="auto")
    assert not list(tmp_path.iterdir()), "a refused export leaves no file"


def test_auto_times_every_candidate_and_ships_the_fastest_within_budget(vit, tmp_path):
    model, data = vit
    check = tfkd.export.export_and_check(model, str(tmp_path / "auto.tflite"), data,
                                         quantization="auto", representative_data=data,
                                         max_drop_points=2.0)
    auto = check.auto
    names = [c["name"] for c in auto["candidates"]]
    assert names[0] == "int8" and names[-3:] == ["dynamic", "float16", "float32"]
    assert all(c["median_ms"] > 0 and c["size_bytes"] > 0 for c in auto["candidates"])
    within = [c for c in auto["candidates"] if c["passed"]]
    fastest = min(within, key=lambda c: (c["median_ms"], c["size_bytes"]))
    assert auto["chosen"] == fastest["name"] and auto["target"] == "local"
    assert check.export.path == str(tmp_path / "auto.tflite")
    assert check.export.size_bytes == fastest["size_bytes"]
    assert (tmp_path / "auto.tflite").stat().st_size == fastest["size_bytes"]
    assert f"{fastest['name']} is the fastest of the {len(within)} exports" in auto["reason"]
    by_name = {c["name"]: c for c in auto["candidates"]}
    slower = by_name["int8"]["median_ms"] > by_name["float32"]["median_ms"]
    assert ("int8 is slower than float32 on this target" in auto["reason"]) == slower


def test_auto_repairs_a_failing_int8_before_falling_back(vit, tmp_path):
    """Calibrating on [0, 1] images breaks int8 (the classic mistake); auto tries keeping the
    worst tensors in float, then ships an export that needs no calibration."""
    model, data = vit
    normalized = data.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    with pytest.warns(UserWarning, match=r"calibration images lie in \[0, 1\]"):
        check = tfkd.export.export_and_check(model, str(tmp_path / "auto.tflite"), data,
                                             quantization="auto", representative_data=normalized,
                                             max_drop_points=1.0)
    names = [c["name"] for c in check.auto["candidates"]]
    assert names[1].startswith("int8+float["), names
    assert "full int8 lost" in check.auto["reason"]
    assert check.auto["chosen"] in ("dynamic", "float16", "float32")  # no calibration needed
    assert check.passed and check.drop_points <= 1.0
    with pytest.raises(ValueError, match=r"one thread count; pass threads=N .*threads=\(1, 2\)"):
        tfkd.export.export_and_check(model, str(tmp_path / "x.tflite"), data,
                                     quantization="auto", threads=(1, 2))
    with pytest.raises(ValueError, match="keep_float does not combine with quantization='auto'"):
        tfkd.export.export_and_check(model, str(tmp_path / "x.tflite"), data,
                                     quantization="auto", keep_float=["SOFTMAX"])


def test_a_study_with_quantization_auto_reports_its_choice(tmp_path):
    from tfkd.recipes import resolution_sweep

    (row,) = resolution_sweep.run(resolution_sweep.Config(
        data_size=16, teacher="convnet_s", teacher_size=16, limit=256, teacher_limit=256,
        test_limit=128, epochs=1, teacher_epochs=1, resolutions=(16,), scratch=False,
        student="convnet_s", quantization="auto", bench_threads=(1,), verbose=0,
        diagnose_quantization=True, output_dir=str(tmp_path)))
    record = row["tflite"]["auto"]
    assert record["chosen"] in [c["name"] for c in record["candidates"]]
    assert row["bench"] and row["bench"][0]["model_path"].endswith("student_auto.tflite")
    study = tmp_path / "resolution_sweep" / "default"
    report = (study / "report.md").read_text()
    assert "## Export choice" in report and f"**{record['chosen']}**" in report
    errors = [e["error"] for e in record["layer_errors"]]
    assert 0 < len(errors) <= 20 and errors == sorted(errors, reverse=True)
    assert (study / "runs" / row["run_id"] / "quantization_errors.csv").read_text().startswith(
        "op,tensor,layer,error")
    assert "![quantization errors](plots/quantization_errors.png)" in report
    assert (study / "plots" / "quantization_errors.png").stat().st_size > 1000
