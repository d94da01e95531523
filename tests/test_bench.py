"""tfkd.bench on this machine: real LiteRT runs of real .tflite files, tfkd's and foreign ones."""

import json
import os
import stat
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tfkd
from tfkd import bench, export
from tfkd.bench.results import BenchResult
from tests.helpers import tiny_cnn


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An int8 and a float32 export of the same small CNN."""
    folder = tmp_path_factory.mktemp("models")
    model = tiny_cnn(16, 10)
    calibration = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    return {q: export.to_tflite(model, str(folder / f"{q}.tflite"), quantization=q,
                                representative_data=calibration).path
            for q in ("int8", "float32")}


def _check_statistics(result):
    assert result.count == result.num_runs
    assert 0 < result.min_ms <= result.p5_ms <= result.median_ms <= result.p95_ms <= result.max_ms
    assert result.min_ms <= result.mean_ms <= result.max_ms and result.std_ms >= 0


@pytest.mark.parametrize("quantization", ["int8", "float32"])
def test_local_run_fills_the_schema(models, quantization):
    results = bench.run(models[quantization], threads=(1, 2), warmup_runs=3, num_runs=20)
    assert [r.threads for r in results] == [1, 2]
    for r in results:
        _check_statistics(r)
        assert (r.tool, r.target, r.runtime, r.delegate) == ("litert", "local",
                                                              "ai_edge_litert", "xnnpack")
        assert r.runtime_version and r.init_ms > 0 and r.first_ms > 0 and r.warmup_ms > 0
        assert r.peak_memory_mb > 100  # this process holds TensorFlow: hundreds of MB
        assert 0 <= r.memory_init_mb <= r.memory_overall_mb
        assert r.device["cpu_count"] == os.cpu_count() and r.timestamp.endswith("+00:00")
        assert r.model_path == models[quantization]


def test_results_round_trip_through_json_lines(models, tmp_path):
    results = bench.run(models["int8"], threads=1, num_runs=5, delegate="none")
    assert results[0].delegate == "none"
    path = tmp_path / "results.jsonl"
    bench.append_jsonl(results, path)
    bench.append_jsonl(results, path)
    again = bench.read_jsonl(path)
    assert again == results * 2
    json.loads(path.read_text().splitlines()[0])  # one complete JSON object per line
    with pytest.raises(ValueError, match=r"unknown BenchResult fields \['latency'\]"):
        BenchResult.from_dict({"model_path": "m", "latency": 1})


def test_litert_benchmark_command_reads_into_the_same_schema(tmp_path):
    model = tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=10)
    path = export.to_tflite(model, str(tmp_path / "m.tflite"), quantization="float32").path
    (result,) = bench.run(path, threads=2, tool="litert-benchmark", num_runs=10)
    assert result.tool == "litert-benchmark" and result.count == 10
    assert result.threads == 2 and result.delegate == "cpu"
    assert result.init_ms > 0 and result.first_ms > 0
    assert 0 < result.min_ms <= result.median_ms <= result.max_ms and result.mean_ms > 0
    assert "--num_threads" in result.extra["argv"]


def test_litert_benchmark_times_below_its_resolution_are_none_not_zero(models):
    """The command rounds to 0.01 ms, and this tiny CNN runs faster than that."""
    (result,) = bench.run(models["int8"], threads=1, tool="litert-benchmark", num_runs=5)
    times = {k: v for k, v in result.to_dict().items() if k.endswith("_ms")}
    assert all(v is None or v > 0 for k, v in times.items() if k != "std_ms"), times
    assert sorted(k for k, v in times.items() if v is None and k != "std_ms") == \
        sorted(result.extra.get("below_resolution", [])) != []


def test_a_foreign_model_with_two_inputs_two_outputs_and_float16_weights(tmp_path):
    """Converted by TensorFlow directly, not by tfkd: bench must not assume tfkd's layout."""
    image, extra = keras.Input((12, 12, 3), batch_size=1), keras.Input((5,), batch_size=1)
    features = layers.GlobalAveragePooling2D()(layers.Conv2D(8, 3)(image))
    merged = layers.Concatenate()([features, extra])
    model = keras.Model([image, extra], [layers.Dense(4)(merged), layers.Dense(2)(merged)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path = tmp_path / "foreign.tflite"
    path.write_bytes(converter.convert())
    (result,) = bench.run(str(path), threads=2, num_runs=10)
    _check_statistics(result)


def _custom_op_model(tmp_path, select_tf_ops):
    """TFLite has neither op built in; Erf is in the Flex allowlist, BesselI1e is not."""
    class Odd(layers.Layer):
        def call(self, x):
            return tf.math.erf(x) if select_tf_ops else tf.math.bessel_i1e(x)

    inputs = keras.Input((8, 8, 3), batch_size=1)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(Odd()(inputs))))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if select_tf_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                               tf.lite.OpsSet.SELECT_TF_OPS]
    else:
        converter.allow_custom_ops = True
    path = tmp_path / ("flex.tflite" if select_tf_ops else "custom.tflite")
    path.write_bytes(converter.convert())
    return str(path)


def test_a_model_needing_a_custom_op_fails_clearly(tmp_path):
    path = _custom_op_model(tmp_path, select_tf_ops=False)
    with pytest.raises(RuntimeError, match=r"uses custom ops \['BesselI1e'\] that this runtime "
                                           r"does not have; register them .* or re-export"):
        bench.run(path, threads=1)


def test_a_model_needing_tensorflow_ops_fails_clearly(tmp_path):
    path = _custom_op_model(tmp_path, select_tf_ops=True)
    with pytest.raises(RuntimeError, match=r"needs TensorFlow \(Select TF / Flex\) ops "
                                           r"\['FlexErf'\].* re-export with builtin ops"):
        bench.run(path, threads=1)


def test_benchmark_model_tool_by_path(models, tmp_path):
    """A stand-in for the binary: prints the tool's output format and records its argv."""
    script = tmp_path / "benchmark_model"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/argv\n'
        "echo 'INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds'\n"
        "echo 'INFO: count=10 first=900 curr=500 min=450 max=900 avg=520 std=40'\n"
        "echo 'INFO: Running benchmark for at least 20 iterations and at least 1 seconds'\n"
        "echo 'INFO: count=20 first=520 curr=500 min=480 max=700 avg=510.5 std=30 "
        "p5=485 median=505 p95=650'\n"
        "echo 'INFO: Inference timings in us: Init: 3000, First inference: 900, "
        "Warmup (avg): 520, Inference (avg): 510.5'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    results = bench.run(models["int8"], threads=(1, 2), tool="benchmark_model",
                        benchmark_binary=str(script), num_runs=20, use_xnnpack=False)
    assert [r.threads for r in results] == [1, 2]
    assert results[0].median_ms == pytest.approx(0.505) and results[0].init_ms == 3.0
    argv = (tmp_path / "argv").read_text().split()
    assert f"--graph={models['int8']}" in argv and "--num_threads=2" in argv
    assert "--use_xnnpack=false" in argv and "--num_runs=20" in argv


def test_bad_requests_say_what_to_do(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*missing.tflite"):
        bench.run(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match=r"threads=\(0,\); pass positive integers"):
        bench.run(models["int8"], threads=0)
    with pytest.raises(ValueError, match="tool='tflite' cannot run on target 'local'; choose"):
        bench.run(models["int8"], tool="tflite")
    with pytest.raises(ValueError, match="tool='litert-benchmark' cannot run on target 'adb'"):
        bench.run(models["int8"], "adb", tool="litert-benchmark")
    with pytest.raises(ValueError, match=r"target='phone'; use 'local', 'adb' \(the only phone "
                                         r"attached\), 'adb:SERIAL' or 'ssh:user@host\[:port\]'"):
        bench.run(models["int8"], "phone")
    with pytest.raises(ValueError, match="benchmark_binary is used by tool='benchmark_model'"):
        bench.run(models["int8"], benchmark_binary="/bin/true")
    with pytest.raises(ValueError, match="delegate='gpu': the local runtime supports"):
        bench.run(models["int8"], threads=1, delegate="gpu")
    with pytest.raises(ValueError, match=r"takes no settings \['use_gpu'\]"):
        bench.run(models["int8"], tool="litert-benchmark", use_gpu=True)
    with pytest.raises(ValueError, match="warmup_runs=-1, num_runs=5"):
        bench.run(models["int8"], warmup_runs=-1, num_runs=5)


def test_without_ai_edge_litert_falls_back_to_tensorflow_and_says_so(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.warns(UserWarning, match="tf.lite.Interpreter is deprecated"):
        (result,) = bench.run(models["int8"], threads=1, num_runs=5)
    assert result.runtime == "tensorflow" and result.runtime_version == tf.__version__
    _check_statistics(result)
