"""Benchmarks on this machine: the LiteRT interpreter in-process, and the `litert-benchmark` command."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from tfkd import tflite_file
from tfkd.bench.results import BenchResult, host_description

# Distinct random inputs cycled through the timed runs, so no cache sees one input repeatedly.
_NUM_INPUTS = 8


def run_interpreter(path, *, threads=1, warmup_runs=5, num_runs=50, delegate="xnnpack", seed=0):
    """Times `path` in this process: creation, first inference, warm-up, then `num_runs` invokes.

    Inputs are random and realistic for their dtype: pixels 0..255 quantized with the model's own
    parameters for integer inputs, uniform 0..255 for float ones. Only `invoke()` is timed.

    Returns:
        A `BenchResult` (tool "litert"); `peak_memory_mb` is this process's peak resident memory
        during the run, `memory_init_mb` / `memory_overall_mb` its growth from before loading.
    """
    _check_counts(threads, warmup_runs, num_runs)
    with RssSampler() as rss:
        start = time.perf_counter()
        interpreter, runtime, version = tflite_file.load_interpreter(
            path, num_threads=threads, delegate=delegate)
        init_ms = 1e3 * (time.perf_counter() - start)
        rss.mark_init()
        inputs = _random_inputs(interpreter, np.random.default_rng(seed))
        first_ms = _timed_invokes(interpreter, inputs, 1)[0]
        warm = _timed_invokes(interpreter, inputs, warmup_runs)
        timed = np.asarray(_timed_invokes(interpreter, inputs, num_runs))
    return BenchResult(
        model_path=str(path), tool="litert", runtime=runtime, runtime_version=version,
        threads=threads, delegate=delegate, warmup_runs=warmup_runs, num_runs=num_runs,
        count=len(timed), init_ms=init_ms, first_ms=first_ms,
        warmup_ms=float(np.mean(warm)) if warm else None, **_statistics(timed),
        memory_init_mb=rss.init_mb, memory_overall_mb=rss.overall_mb,
        peak_memory_mb=rss.peak_mb, device=host_description()).stamped()


def _check_counts(threads, warmup_runs, num_runs):
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r}; pass a positive integer such as 1 or 4")
    if warmup_runs < 0 or num_runs < 1:
        raise ValueError(f"warmup_runs={warmup_runs}, num_runs={num_runs}: warm-up must be >= 0 "
                         "and timed runs >= 1")


def _statistics(times_ms):
    """The steady-state fields of a `BenchResult` from per-run times."""
    p5, median, p95 = np.percentile(times_ms, [5, 50, 95])
    return {"mean_ms": float(times_ms.mean()), "median_ms": float(median), "p5_ms": float(p5),
            "p95_ms": float(p95), "std_ms": float(times_ms.std()),
            "min_ms": float(times_ms.min()), "max_ms": float(times_ms.max())}


def _random_inputs(interpreter, rng):
    """`_NUM_INPUTS` sets of inputs, one array per input tensor, in the tensors' own dtype."""
    sets = []
    for _ in range(_NUM_INPUTS):
        arrays = []
        for detail in interpreter.get_input_details():
            shape = detail["shape"]
            if np.issubdtype(np.dtype(detail["dtype"]), np.bool_):
                arrays.append(rng.integers(0, 2, shape).astype(bool))
                continue
            pixels = rng.integers(0, 256, shape).astype(np.float32)
            arrays.append(tflite_file.quantize(pixels, detail))
        sets.append(arrays)
    return sets


def _timed_invokes(interpreter, inputs, runs):
    indices = [d["index"] for d in interpreter.get_input_details()]
    times = []
    for k in range(runs):
        for index, array in zip(indices, inputs[k % len(inputs)]):
            interpreter.set_tensor(index, array)
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1e3 * (time.perf_counter() - start))
    return times


class RssSampler:
    """Samples this process's resident memory every few milliseconds in a background thread.

    A thread catches peaks between the points the benchmark itself could look at (tensor
    allocation, the first invoke). Reads /proc, so memory stays None where there is none.
    """

    def __init__(self, interval_s=0.002):
        self.interval_s = interval_s
        self.start_mb = self.peak_mb = self.init_mb = self.overall_mb = None
        self._stop = threading.Event()

    def __enter__(self):
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval_s):
            self._update()

    def _update(self):
        now = _rss_mb()
        if now is not None:
            self.peak_mb = max(self.peak_mb or 0.0, now)

    def mark_init(self):
        self._update()
        if self.start_mb is not None:
            self.init_mb = self.peak_mb - self.start_mb

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._update()
        if self.start_mb is not None:
            self.overall_mb = self.peak_mb - self.start_mb
        return False


def _rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_litert_benchmark(path, *, threads=1, warmup_runs=5, num_runs=50, timeout_s=600):
    """Runs the `litert-benchmark` command shipped with ai-edge-litert and reads its JSON.

    Returns:
        A `BenchResult` (tool "litert-benchmark"). The command rounds times to 0.01 ms.
    """
    _check_counts(threads, warmup_runs, num_runs)
    # Next to this interpreter first: a virtualenv's scripts need not be on PATH.
    command = shutil.which("litert-benchmark", path=os.path.dirname(sys.executable)) or \
        shutil.which("litert-benchmark")
    if command is None:
        raise FileNotFoundError("litert-benchmark not found on PATH; it comes with "
                                "ai-edge-litert: pip install ai-edge-litert")
    with tempfile.TemporaryDirectory() as tmp:
        result_json = os.path.join(tmp, "result.json")
        argv = [command, "--model", str(path), "--num_threads", str(threads),
                "--warmup_runs", str(warmup_runs), "--num_runs", str(num_runs),
                "--result_json", result_json]
        done = _run_command(argv, timeout_s)
        if done.returncode != 0 or not os.path.exists(result_json):
            tail = "\n".join(done.stdout.splitlines()[-20:])
            raise RuntimeError(f"litert-benchmark failed on {path} (exit {done.returncode}):\n"
                               f"{tail}")
        with open(result_json) as f:
            report = json.load(f)
    return _from_litert_json(report, path, threads, warmup_runs, num_runs, argv)


def _run_command(argv, timeout_s):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{argv[0]} did not finish within {timeout_s} s") from None


# litert-benchmark's JSON "latency" keys -> BenchResult fields.
_LITERT_KEYS = {"init_ms": "init_ms", "warmup_first_ms": "first_ms",
                "warmup_avg_ms": "warmup_ms", "avg_ms": "mean_ms", "median_ms": "median_ms",
                "p5_ms": "p5_ms", "p95_ms": "p95_ms", "std_ms": "std_ms", "min_ms": "min_ms",
                "max_ms": "max_ms"}


def _from_litert_json(report, path, threads, warmup_runs, num_runs, argv):
    latency = report.get("latency", {})
    if latency.get("avg_ms") is None:
        raise ValueError(f"litert-benchmark wrote no latency for {path}: {report}")
    times = {field: latency.get(key) for key, field in _LITERT_KEYS.items()}
    extra = {"argv": argv}
    # The command rounds to 0.01 ms; a 0.0 means "faster than that", not zero time.
    rounded = sorted(field for field, value in times.items() if value == 0 and field != "std_ms")
    if rounded:
        extra["below_resolution"] = rounded
        times.update(dict.fromkeys(rounded))
    return BenchResult(
        model_path=str(path), tool="litert-benchmark", runtime="ai_edge_litert",
        runtime_version=tflite_file.runtime_version("ai_edge_litert"), threads=threads,
        delegate="+".join(a.lower() for a in report.get("accelerators", [])) or None,
        warmup_runs=warmup_runs, num_runs=num_runs, count=latency.get("num_runs"), **times,
        device=host_description(), extra=extra).stamped()
