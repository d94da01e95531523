"""Latency and memory of .tflite models, one `BenchResult` schema for every tool and target.

    results = tfkd.bench.run("student.tflite", threads=(1, 2))
    results = tfkd.bench.run("student.tflite", tool="benchmark_model",
                             benchmark_binary="/opt/benchmark_model")

Targets and their tools:
    "local": "litert", the ai_edge_litert interpreter in this process (the default);
        "litert-benchmark", the command that ships with ai-edge-litert; "benchmark_model", the
        official TFLite benchmark tool, given by path or fetched.
    "adb" (the only phone attached) or "adb:SERIAL": "benchmark_model" on the phone, through
        `android_bench`.
    "ssh:user@host[:port]": "litert" (the default: a runner script times the model with the
        Python runtime the board has) or "benchmark_model".
"""

import os
import platform

from tfkd.bench import benchmark_tool, local
from tfkd.bench.benchmark_tool import BenchmarkFailed
from tfkd.bench.fetch import fetch_benchmark_tool, platform_for_machine
from tfkd.bench.results import BenchResult, append_jsonl, read_jsonl

TOOLS = ("litert", "litert-benchmark", "benchmark_model")
# The tools each kind of target can run; the first is its default.
_TARGET_TOOLS = {"local": TOOLS, "adb": ("benchmark_model",),
                 "ssh": ("litert", "benchmark_model")}

__all__ = ["BenchResult", "BenchmarkFailed", "TOOLS", "append_jsonl", "benchmark_tool",
           "fetch_benchmark_tool", "read_jsonl", "run", "target_kind", "thread_list"]


def run(path, target="local", *, threads=(1, 2), tool=None, warmup_runs=5, num_runs=50,
        benchmark_binary=None, timeout_s=600, **settings):
    """Benchmarks `path` once per thread count.

    Args:
        path: a .tflite file (any: tfkd's or one produced elsewhere).
        target: "local", "adb", "adb:SERIAL" or "ssh:user@host[:port]".
        threads: thread counts, one result each.
        tool: one of TOOLS the target supports; None: the target's default.
        warmup_runs, num_runs: untimed and timed inferences per setting.
        benchmark_binary: path of a `benchmark_model` binary; without one, tool="benchmark_model"
            downloads the official prebuilt for this machine into the cache.
        timeout_s: limit for each external command.
        **settings: more `benchmark_tool.build_args` settings for tool="benchmark_model"
            (min_secs, use_xnnpack, enable_op_profiling, ...); `delegate` ("xnnpack" or "none")
            for tool="litert"; for "adb" targets those of `android_bench.run`, for "ssh"
            targets those of `tfkd.bench.ssh.run` (identity_file, ssh_options, ...).

    Returns:
        A list of `BenchResult`, in the order of `threads`.
    """
    threads = thread_list(threads)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}; pass the path of a .tflite file")
    kind = target_kind(target)
    tool = tool or _TARGET_TOOLS[kind][0]
    if tool not in _TARGET_TOOLS[kind]:
        raise ValueError(f"tool={tool!r} cannot run on target {target!r}; choose one of "
                         f"{_TARGET_TOOLS[kind]}")
    if tool != "benchmark_model" and benchmark_binary is not None:
        raise ValueError("benchmark_binary is used by tool='benchmark_model' only")
    counts = {"warmup_runs": warmup_runs, "num_runs": num_runs}
    if kind == "adb":
        import android_bench  # a top-level package of its own: `python -m android_bench`
        return android_bench.run(path, serial=target[len("adb:"):] or None, threads=threads,
                                 benchmark_binary=benchmark_binary, timeout_s=timeout_s,
                                 **counts, **settings)
    if kind == "ssh":
        from tfkd.bench import ssh
        method = "python" if tool == "litert" else tool
        return ssh.run(path, target, method=method, threads=threads,
                       benchmark_binary=benchmark_binary, timeout_s=timeout_s, **counts,
                       **settings)
    return _run_local(path, tool, threads, counts, benchmark_binary, timeout_s, settings)


def _run_local(path, tool, threads, counts, benchmark_binary, timeout_s, settings):
    if tool == "litert":
        return [local.run_interpreter(path, threads=t, **counts, **settings) for t in threads]
    if tool == "litert-benchmark":
        _reject_settings(tool, settings)
        return [local.run_litert_benchmark(path, threads=t, timeout_s=timeout_s, **counts)
                for t in threads]
    binary = benchmark_binary or fetch_benchmark_tool(platform_for_machine(platform.machine()))
    return [benchmark_tool.run(binary, path, num_threads=t, timeout_s=timeout_s, **counts,
                               **settings) for t in threads]


def target_kind(target):
    """"local", "adb" or "ssh" for a target string; ValueError saying the forms otherwise."""
    if target == "local":
        return "local"
    if target == "adb" or target.startswith("adb:"):
        return "adb"
    if target.startswith("ssh:") and len(target) > len("ssh:"):
        return "ssh"
    raise ValueError(f"target={target!r}; use 'local', 'adb' (the only phone attached), "
                     "'adb:SERIAL' or 'ssh:user@host[:port]'")


def thread_list(threads):
    """`threads` (an int or a sequence) as a tuple of positive ints; ValueError otherwise."""
    threads = (threads,) if isinstance(threads, int) else tuple(threads)
    if not threads or any(not isinstance(t, int) or isinstance(t, bool) or t < 1
                          for t in threads):
        raise ValueError(f"threads={threads!r}; pass positive integers, e.g. threads=(1, 2)")
    return threads


def _reject_settings(tool, settings):
    if settings:
        raise ValueError(f"tool={tool!r} takes no settings {sorted(settings)}; "
                         "they apply to tool='benchmark_model'")
