"""The drivers of LiteRT's own tools: "litert" (the interpreter) and "litert-benchmark".

"litert" on the target "local" times the interpreter in this process (`tfkd.bench.local`); on
any other target it copies `remote_runner.py`, which times the model with whichever of
ai_edge_litert, tflite_runtime or tensorflow the device's Python (`device.python`) has, and
reads the JSON line it prints. "litert-benchmark" is the command ai-edge-litert installs here.
"""

import json
import logging
import os
import pathlib

from tfkd.bench import local
from tfkd.bench.benchmark_output import BenchmarkFailed
from tfkd.bench.results import BenchResult

LITERT_SETTINGS = ("seed", "min_secs")
RUNNER = pathlib.Path(__file__).with_name("remote_runner.py")
_NOT_FOUND = 127
_REPORTED = ("init_ms", "first_ms", "warmup_ms", "mean_ms", "median_ms", "p5_ms", "p95_ms",
             "std_ms", "min_ms", "max_ms", "memory_init_mb", "memory_overall_mb",
             "peak_memory_mb", "count", "runtime", "runtime_version")

logger = logging.getLogger("tfkd.bench")


def check(job):
    """min_secs is the runner's (in this process, exactly num_runs runs are timed)."""
    if job.kind == "local" and job.settings.get("min_secs") is not None:
        raise ValueError("min_secs is taken by the runner script on remote targets; in this "
                         "process exactly num_runs runs are timed: raise num_runs instead")
    min_secs = job.settings.get("min_secs")
    if min_secs is not None and (isinstance(min_secs, bool) or not isinstance(
            min_secs, (int, float)) or not min_secs >= 0):
        raise ValueError(f"min_secs must be a number >= 0 or None, got {min_secs!r}")


def run(device, job):
    """One result per setting: in this process on "local", else with the runner script."""
    if device.name == "local":
        return [local.run_interpreter(job.model_path, threads=threads, delegate=delegate,
                                      warmup_runs=job.warmup_runs, num_runs=job.num_runs,
                                      **job.settings)
                for threads, delegate in job.plan]
    paths = device.put({"runner.py": RUNNER, "model.tflite": job.model_path})
    return [_run_runner(device, job, paths, threads, delegate) for threads, delegate in job.plan]


def _run_runner(device, job, paths, threads, delegate):
    words = [device.python, paths["runner.py"], paths["model.tflite"], "--threads", threads,
             "--num-runs", job.num_runs, "--warmup-runs", job.warmup_runs]
    for name, flag in (("min_secs", "--min-secs"), ("seed", "--seed")):
        words += [flag, job.settings[name]] if job.settings.get(name) is not None else []
    words += ["--no-xnnpack"] if delegate == "none" else []
    logger.info("benchmarking %s on %s: threads=%d delegate=%s",
                os.path.basename(job.model_path), device.name, threads, delegate)
    report = _report(device, device.run(words, job.timeout_s))
    extra = {**device.extra, "argv": [str(w) for w in words], "numpy": report.get("numpy"),
             "python": report.get("python")}
    if device.warnings:
        extra["warnings"] = list(device.warnings)
    return BenchResult(
        model_path=os.fspath(job.model_path), target=device.name, tool="litert",
        threads=threads, delegate=delegate, num_runs=job.num_runs, warmup_runs=job.warmup_runs,
        device=dict(device.describe(), python=report.get("python")), extra=extra,
        **{k: report.get(k) for k in _REPORTED}).stamped()


def _report(device, done):
    """The runner's JSON result; raises with its error or what went wrong."""
    report = _last_json(done.output)
    python = device.python
    if isinstance(report, dict) and "error" in report:
        # No tail: BenchmarkFailed would label it benchmark_model output; the JSON says it all.
        trace = "".join(f"\n  {line}" for line in report.get("traceback", []))
        raise BenchmarkFailed(f"the python runner failed on {device.name} with {python}: "
                              f"{report['error']}{trace}")
    if done.status == _NOT_FOUND:
        raise device.error(
            f"{python} was not found on {device.name}: install Python 3 there (sudo apt install "
            "python3 python3-pip; then pip install ai-edge-litert) or pass python= the path of "
            "the interpreter to use", done.output, done.status)
    if done.status != 0 or not isinstance(report, dict) or report.get("mean_ms") is None:
        raise device.error(
            f"the python runner printed no result on {device.name} (exit status {done.status}); "
            f"it needs Python 3.7+ with numpy: check `{python} --version` there", done.output,
            done.status)
    return report


def _last_json(text):
    """The last line of `text` that is a JSON object (the runtime may log around it)."""
    for line in reversed(text.splitlines()):
        if line.strip().startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def check_command(job):
    """litert-benchmark takes the run counts only."""


def run_command(device, job):
    """One result per setting from the `litert-benchmark` command (local only).

    Its CPU accelerator is XNNPACK: the result says "xnnpack" as asked, and keeps the command's
    own word ("cpu") in extra["reported_delegate"].
    """
    results = []
    for threads, delegate in job.plan:
        result = local.run_litert_benchmark(job.model_path, threads=threads,
                                            warmup_runs=job.warmup_runs,
                                            num_runs=job.num_runs, timeout_s=job.timeout_s)
        if result.delegate != delegate:
            result.extra["reported_delegate"] = result.delegate
            result.delegate = delegate
        results.append(result)
    return results
