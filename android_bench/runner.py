"""`android_bench.run`: `tfkd.bench.run` on the "adb" target, with the phone's defaults.

Everything happens in tfkd.bench: the target (`tfkd.bench.targets.adb`: push, run, pull,
remove the run folder whatever happens) and the tool (`tfkd.bench.tool_benchmark_model`).
"""

from tfkd import bench
from tfkd.bench import settings as vocabulary

__all__ = ["run"]


def run(model_path, *, serial=None, threads=(1,), delegate="xnnpack", taskset=None,
        enable_op_profiling=False, benchmark_binary=None, num_runs=50, warmup_runs=5,
        min_secs=None, timeout_s=300, output_dir=None, adb=None, delegates=None):
    """Benchmarks a .tflite model on an Android phone with `benchmark_model`, over adb.

    Args:
        model_path: the .tflite file on this machine.
        serial: the device; default `$ANDROID_SERIAL`, else the only one attached.
        threads: CPU thread counts; one result per thread count and delegate.
        delegate: one of "xnnpack", "gpu", "nnapi", "none" (builtin CPU kernels), or a
            sequence of them (`tfkd.bench.DELEGATES`).
        taskset: a hex CPU mask (e.g. "f0") to pin the tool to those cores with `taskset`.
        enable_op_profiling: also profile each op; the CSV is pulled into `output_dir` (a new
            temporary folder when `output_dir` is None) and named in `extra["op_profile_csv"]`.
        benchmark_binary: a benchmark_model built for the phone; default the official prebuilt
            for its ABI, from the cache or downloaded (`tfkd.bench.fetch_benchmark_tool`).
        num_runs, warmup_runs, min_secs: timed runs (at least `min_secs` worth) and warm-ups.
        timeout_s: limit in seconds for each adb command, the benchmark runs included.
        output_dir: where `results.jsonl` is appended; None writes no results file.
        adb: the adb executable; default `$ADB`, else `adb` on PATH.
        delegates: deprecated spelling of `delegate` (a DeprecationWarning).

    Returns:
        One stamped `BenchResult` per setting, threads-major, target "adb:SERIAL".

    Raises:
        ValueError, FileNotFoundError: bad arguments (checked before touching the device).
        AdbError: adb missing, no/several/unready devices, a lost device, a timeout, ...
        BenchmarkFailed, UnparseableOutput: the tool failed or printed no timing.
    """
    if delegates is not None:
        if delegate not in (None, vocabulary.DEFAULT_DELEGATE):
            raise ValueError("pass delegate= alone, not with delegates=")
        vocabulary.warn("android_bench.run(delegates=...) is deprecated; pass delegate=, the "
                        "same names", stacklevel=3)
        delegate = delegates
    settings = {"min_secs": min_secs} if min_secs is not None else {}
    return bench.run(model_path, f"adb:{serial}" if serial else "adb", tool="benchmark_model",
                     threads=threads, delegate=delegate, num_runs=num_runs,
                     warmup_runs=warmup_runs, benchmark_binary=benchmark_binary,
                     timeout_s=timeout_s, output_dir=output_dir, adb=adb, taskset=taskset,
                     enable_op_profiling=enable_op_profiling, **settings)
