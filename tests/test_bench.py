"""tfkd.bench on this machine: real LiteRT runs of real .tflite files, tfkd's and foreign ones."""

import inspect
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tfkd
from tfkd import bench, export
from tfkd.bench import benchmark_tool, targets
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
    assert result.threads == 2 and result.delegate == "xnnpack"  # its CPU accelerator
    assert result.extra["reported_delegate"] == "cpu"
    assert result.init_ms > 0 and result.first_ms > 0
    assert 0 < result.min_ms <= result.median_ms <= result.max_ms and result.mean_ms > 0
    assert "--num_threads" in result.extra["argv"]


def test_litert_benchmark_times_below_its_resolution_are_none_not_zero(models):
    """The command rounds to 0.01 ms, and this tiny CNN may run faster than that: whatever it
    printed as 0 is None and listed, never a zero time."""
    (result,) = bench.run(models["int8"], threads=1, tool="litert-benchmark", num_runs=200)
    times = {k: v for k, v in result.to_dict().items() if k.endswith("_ms")}
    assert all(v is None or v > 0 for k, v in times.items() if k != "std_ms"), times
    assert sorted(k for k, v in times.items() if v is None and k != "std_ms") == \
        sorted(result.extra.get("below_resolution", []))


def test_litert_benchmark_zeros_are_read_as_below_its_resolution():
    """The same rule on a report whose fastest runs printed 0 (machine speed decides that in
    the real run above, so the rule is pinned down here)."""
    report = {"latency": {"avg_ms": 0.02, "min_ms": 0.0, "max_ms": 0.05, "median_ms": 0.0,
                          "std_ms": 0.0, "num_runs": 200}, "accelerators": ["CPU"]}
    result = bench.local._from_litert_json(report, "m.tflite", 1, 5, 200, ["litert-benchmark"])
    assert (result.mean_ms, result.min_ms, result.median_ms, result.std_ms) == (0.02, None,
                                                                               None, 0.0)
    assert sorted(result.extra["below_resolution"]) == ["median_ms", "min_ms"]


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


def fake_benchmark_model(folder, profile=False):
    """A stand-in for the binary: prints the tool's output format and records its argv; with
    `profile`, writes the op-profiling CSV it is asked for."""
    script = folder / "benchmark_model"
    csv = ('for a in "$@"; do case $a in --profiling_output_csv_file=*) '
           'printf "node type,avg ms\\n" > "${a#*=}";; esac; done\n') if profile else ""
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {folder}/argv\n' + csv +
        "echo 'INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds'\n"
        "echo 'INFO: count=10 first=900 curr=500 min=450 max=900 avg=520 std=40'\n"
        "echo 'INFO: Running benchmark for at least 20 iterations and at least 1 seconds'\n"
        "echo 'INFO: count=20 first=520 curr=500 min=480 max=700 avg=510.5 std=30 "
        "p5=485 median=505 p95=650'\n"
        "echo 'INFO: Inference timings in us: Init: 3000, First inference: 900, "
        "Warmup (avg): 520, Inference (avg): 510.5'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_benchmark_model_tool_by_path(models, tmp_path):
    script = fake_benchmark_model(tmp_path)
    results = bench.run(models["int8"], threads=(1, 2), tool="benchmark_model",
                        benchmark_binary=script, num_runs=20, delegate="none")
    assert [r.threads for r in results] == [1, 2]
    assert results[0].median_ms == pytest.approx(0.505) and results[0].init_ms == 3.0
    assert (results[0].target, results[0].tool, results[0].delegate) == (
        "local", "benchmark_model", "none")
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
    with pytest.raises(ValueError, match="delegate='gpu' cannot run with tool='litert' on "
                       "target 'local', which runs 'xnnpack', 'none'; 'gpu' runs with "
                       "tool='benchmark_model' on local, adb, ssh targets"):
        bench.run(models["int8"], threads=1, delegate="gpu")
    with pytest.raises(ValueError, match="delegate='nnapi' cannot run with "
                       "tool='benchmark_model' on target 'local'.*'nnapi' runs with "
                       "tool='benchmark_model' on adb targets"):
        bench.run(models["int8"], tool="benchmark_model", delegate=("xnnpack", "nnapi"))
    with pytest.raises(ValueError, match=r"delegate='tpu': unknown delegates \['tpu'\]; choose "
                                         "from xnnpack, gpu, nnapi, none"):
        bench.run(models["int8"], delegate="tpu")
    with pytest.raises(ValueError, match=r"tool='litert-benchmark' on target 'local' takes no "
                                         r"settings \['min_secs'\]"):
        bench.run(models["int8"], tool="litert-benchmark", min_secs=1)
    with pytest.raises(ValueError, match="warmup_runs must be an int >= 0, got -1"):
        bench.run(models["int8"], warmup_runs=-1, num_runs=5)
    with pytest.raises(ValueError, match="timeout_s=0; pass a positive number"):
        bench.run(models["int8"], timeout_s=0)


def test_without_ai_edge_litert_falls_back_to_tensorflow_and_says_so(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.warns(UserWarning, match="tf.lite.Interpreter is deprecated"):
        (result,) = bench.run(models["int8"], threads=1, num_runs=5)
    assert result.runtime == "tensorflow" and result.runtime_version == tf.__version__
    _check_statistics(result)


# --- one settings vocabulary ---------------------------------------------------------------

def test_one_result_per_thread_count_and_delegate_threads_major(models):
    results = bench.run(models["int8"], threads=(1, 2), delegate=("xnnpack", "none"),
                        num_runs=3)
    assert [(r.threads, r.delegate) for r in results] == [
        (1, "xnnpack"), (1, "none"), (2, "xnnpack"), (2, "none")]
    assert bench.DELEGATES == ("xnnpack", "gpu", "nnapi", "none")


@pytest.mark.parametrize("delegate, flags", [
    ("xnnpack", ["--use_xnnpack=true"]), ("gpu", ["--use_gpu=true", "--use_xnnpack=false"]),
    ("nnapi", ["--use_nnapi=true", "--use_xnnpack=false"]), ("none", ["--use_xnnpack=false"])])
def test_every_delegate_word_is_one_set_of_benchmark_model_flags(delegate, flags):
    assert benchmark_tool.delegate_flags(delegate) == flags
    args = benchmark_tool.build_args("m.tflite", num_threads=1, delegate=delegate)
    assert [a for a in args if a.startswith("--use_")] == flags


def test_old_spellings_warn_once_and_give_the_same_run(models, tmp_path):
    script = fake_benchmark_model(tmp_path)
    with pytest.warns(DeprecationWarning, match=r"tfkd.bench.run\(use_xnnpack=False\) is "
                                                "deprecated; pass delegate='none'") as caught:
        (old,) = bench.run(models["int8"], threads=1, tool="benchmark_model",
                           benchmark_binary=script, use_xnnpack=False)
    assert len([w for w in caught if w.category is DeprecationWarning]) == 1
    old_argv = (tmp_path / "argv").read_text()
    (new,) = bench.run(models["int8"], threads=1, tool="benchmark_model",
                       benchmark_binary=script, delegate="none")
    assert old_argv == (tmp_path / "argv").read_text() and old.delegate == new.delegate == "none"
    with pytest.warns(DeprecationWarning, match=r"delegates=\.\.\.\) is deprecated"):
        results = bench.run(models["int8"], threads=1, num_runs=3, delegates=("none",))
    assert [r.delegate for r in results] == ["none"]
    with pytest.raises(ValueError, match="pass delegate= alone"):
        bench.run(models["int8"], delegate="none", use_xnnpack=False)


def test_local_benchmark_model_profiles_into_output_dir(models, tmp_path):
    script = fake_benchmark_model(tmp_path, profile=True)
    out = tmp_path / "out"
    results = bench.run(models["int8"], threads=(1, 2), tool="benchmark_model",
                        benchmark_binary=script, enable_op_profiling=True, output_dir=str(out))
    names = sorted(os.listdir(out))
    assert names[-1] == "results.jsonl" and len(names) == 3
    assert [os.path.basename(r.extra["op_profile_csv"]) for r in results] == names[:2]
    assert bench.read_jsonl(out / "results.jsonl") == results


# --- the target table and its contract -----------------------------------------------------

def test_every_target_in_the_table_meets_the_contract():
    assert set(targets.TARGETS) == {"local", "adb", "ssh"}
    for kind, module in targets.TARGETS.items():
        assert module.FORMS and all(isinstance(f, str) for f in module.FORMS), kind
        assert module.TOOLS and set(module.TOOLS) <= set(bench.DRIVERS), kind
        assert all(d and set(d) <= set(bench.DELEGATES) for d in module.TOOLS.values()), kind
        parameters = inspect.signature(module.open).parameters
        assert "timeout_s" in parameters and set(module.OPTIONS) <= set(parameters), kind
        for name in ("matches", "parse", "open"):
            assert callable(getattr(module, name)), (kind, name)
        for name in ("describe", "benchmark_platform", "put", "run", "fetch", "error",
                     "cleanup"):
            assert callable(getattr(module.Device, name)), (kind, name)
        if "litert" in module.TOOLS and kind != "local":
            assert "python" in module.OPTIONS, kind


@pytest.mark.parametrize("target, kind", [("local", "local"), ("adb", "adb"),
                                          ("adb:R58M123ABC", "adb"), ("ssh:pi@host:22", "ssh")])
def test_target_kind_finds_the_module(target, kind):
    assert bench.target_kind(target) == kind


def test_target_kind_errors_show_the_forms():
    with pytest.raises(ValueError, match=r"target='phone'; use 'local', 'adb' \(the only phone "
                                         r"attached\), 'adb:SERIAL' or 'ssh:user@host\[:port\]'"):
        bench.target_kind("phone")
    with pytest.raises(ValueError, match="bad host name ''; write it as 'ssh:user@host'"):
        bench.target_kind("ssh:")
    with pytest.raises(ValueError, match="bad serial '-s'"):
        bench.target_kind("adb:-s")


def test_the_local_target_puts_runs_fetches_and_cleans_up(tmp_path):
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\necho out; echo err >&2; echo made > made.txt; exit 3\n")
    program.chmod(0o755)
    with targets.local.open("local", timeout_s=30) as device:
        folder = device.folder
        paths = device.put({"tool": program}, executable=("tool",))
        assert paths == {"tool": str(program)}  # in place: this machine sees its own files
        done = device.run([paths["tool"]])
        assert (done.status, done.output) == (3, "out\nerr\n")
        device.fetch(f"{folder}/made.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "made\n"
        assert device.run(["sh", "-c", "kill -9 $$"]).status == 128 + 9
        with pytest.raises(targets.local.CommandTimeout, match="did not finish within 0.2 s"):
            device.run(["sleep", "5"], timeout_s=0.2)
        assert device.describe()["cpu_count"] == os.cpu_count()
    assert not os.path.exists(folder)
    program.chmod(0o644)
    with pytest.raises(PermissionError, match="is not executable; run chmod"):
        with targets.local.open() as device:
            device.put({"tool": program}, executable=("tool",))


# --- imports point one way: android_bench -> tfkd.bench ------------------------------------

def test_tfkd_never_imports_android_bench():
    code = ("import sys, tfkd, tfkd.bench, tfkd.bench.targets.adb, tfkd.bench.ssh; "
            "assert 'android_bench' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    root = pathlib.Path(tfkd.__file__).parent
    naming = [str(path) for path in root.rglob("*.py")
              if re.search(r"^\s*(import|from)\s+android_bench\b|import_module\(.android_bench",
                           path.read_text(), re.M)]
    assert naming == []


class _CopyingDevice:
    """A device of a made-up kind, "copy:NAME": this machine, but files are copied (as to a
    remote device) into a run folder. Written against the contract alone."""

    python = None

    def __init__(self, target, timeout_s):
        self.name, self.timeout_s = target, timeout_s
        self.folder = tempfile.mkdtemp(prefix="tfkd-copy-")
        self.warnings, self.extra = ["a note"], {"remote_dir": self.folder}

    def describe(self):
        return {"machine": "made-up"}

    def benchmark_platform(self):
        raise ValueError("no prebuilt for a made-up device; pass benchmark_binary=")

    def put(self, files, executable=()):
        paths = {name: shutil.copy(local, os.path.join(self.folder, name))
                 for name, local in files.items()}
        for name in executable:
            os.chmod(paths[name], 0o755)
        return paths

    def run(self, argv, timeout_s=None):
        status, output = targets.local.execute([str(w) for w in argv], timeout_s, self.folder)
        return targets.Completed(status, output, " ".join(map(str, argv)))

    def fetch(self, remote, local):
        shutil.copyfile(remote, local)

    def error(self, message, output="", status=None):
        return RuntimeError(message)

    def cleanup(self, error=None):
        shutil.rmtree(self.folder)


def test_a_new_target_is_one_module_and_one_table_entry(models, tmp_path, monkeypatch):
    module = types.ModuleType("copy_target")
    module.FORMS = ("'copy:NAME'",)
    module.TOOLS = {"benchmark_model": ("xnnpack", "none")}
    module.OPTIONS = ()
    module.matches = lambda target: target.startswith("copy:")
    module.parse = lambda target: None
    module.open = lambda target, timeout_s: targets.cleaning_up(_CopyingDevice(target, timeout_s))
    monkeypatch.setitem(targets.TARGETS, "copy", module)
    script = fake_benchmark_model(tmp_path)
    results = bench.run(models["int8"], "copy:box", threads=(1, 2), delegate="none",
                        benchmark_binary=script, num_runs=20)
    assert [(r.target, r.threads, r.delegate, r.tool) for r in results] == [
        ("copy:box", 1, "none", "benchmark_model"), ("copy:box", 2, "none", "benchmark_model")]
    assert results[0].device == {"machine": "made-up"} and results[0].extra["warnings"] == [
        "a note"]
    folder = results[0].extra["remote_dir"]
    assert f"--graph={folder}/model.tflite" in (tmp_path / "argv").read_text().split()
    assert not os.path.exists(folder)
    assert bench.target_kind("copy:box") == "copy"
    with pytest.raises(ValueError, match="delegate='gpu' cannot run with tool='benchmark_model' "
                       "on target 'copy:box', which runs 'xnnpack', 'none'"):
        bench.run(models["int8"], "copy:box", delegate="gpu")
    with pytest.raises(ValueError, match="no prebuilt for a made-up device"):
        bench.run(models["int8"], "copy:box", tool="benchmark_model", delegate="none")
