"""Latency and memory of .tflite models, one `BenchResult` schema for every tool and target.

    results = tfkd.bench.run("student.tflite", threads=(1, 2))
    results = tfkd.bench.run("student.tflite", tool="benchmark_model",
                             benchmark_binary="/opt/benchmark_model")

Tools on this machine ("local"):
    "litert": the ai_edge_litert interpreter in this process (the default);
    "litert-benchmark": the command that ships with ai-edge-litert;
    "benchmark_model": the official TFLite benchmark tool, given by path or fetched.
"""

import os
import platform

from tfkd.bench import benchmark_tool, local
from tfkd.bench.benchmark_tool import BenchmarkFailed
from tfkd.bench.fetch import fetch_benchmark_tool, platform_for_machine
from tfkd.bench.results import BenchResult, append_jsonl, read_jsonl

TOOLS = ("litert", "litert-benchmark", "benchmark_model")

__all__ = ["BenchResult", "BenchmarkFailed", "TOOLS", "append_jsonl", "benchmark_tool",
           "fetch_benchmark_tool", "read_jsonl", "run"]


def run(path, target="local", *, threads=(1, 2), tool="litert", warmup_runs=5, num_runs=50,
        benchmark_binary=None, timeout_s=600, **settings):
    """Benchmarks `path` once per thread count.

    Args:
        path: a .tflite file (any: tfkd's or one produced elsewhere).
        target: "local". (Phones and boards: see android_bench and the ssh target.)
        threads: thread counts, one result each.
        tool: one of TOOLS.
        warmup_runs, num_runs: untimed and timed inferences per setting.
        benchmark_binary: path of a `benchmark_model` binary; without one, tool="benchmark_model"
            downloads the official prebuilt for this machine into the cache.
        timeout_s: limit for each external command.
        **settings: more `benchmark_tool.build_args` settings for tool="benchmark_model"
            (min_secs, use_xnnpack, enable_op_profiling, ...); `delegate` ("xnnpack" or "none")
            for tool="litert".

    Returns:
        A list of `BenchResult`, in the order of `threads`.
    """
    threads = _thread_list(threads)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}; pass the path of a .tflite file")
    if target != "local":
        raise ValueError(f"target={target!r}; this version benchmarks target='local' only")
    if tool not in TOOLS:
        raise ValueError(f"tool={tool!r}; choose one of {TOOLS}")
    if tool != "benchmark_model" and benchmark_binary is not None:
        raise ValueError("benchmark_binary is used by tool='benchmark_model' only")
    counts = {"warmup_runs": warmup_runs, "num_runs": num_runs}
    if tool == "litert":
        return [local.run_interpreter(path, threads=t, **counts, **settings) for t in threads]
    if tool == "litert-benchmark":
        _reject_settings(tool, settings)
        return [local.run_litert_benchmark(path, threads=t, timeout_s=timeout_s, **counts)
                for t in threads]
    binary = benchmark_binary or fetch_benchmark_tool(platform_for_machine(platform.machine()))
    return [benchmark_tool.run(binary, path, num_threads=t, timeout_s=timeout_s, **counts,
                               **settings) for t in threads]


def _thread_list(threads):
    threads = (threads,) if isinstance(threads, int) else tuple(threads)
    if not threads or any(not isinstance(t, int) or isinstance(t, bool) or t < 1
                          for t in threads):
        raise ValueError(f"threads={threads!r}; pass positive integers, e.g. threads=(1, 2)")
    return threads


def _reject_settings(tool, settings):
    if settings:
        raise ValueError(f"tool={tool!r} takes no settings {sorted(settings)}; "
                         "they apply to tool='benchmark_model'")
