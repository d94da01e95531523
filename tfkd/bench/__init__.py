"""Latency and memory of .tflite models, one `BenchResult` schema for every tool and target.

    results = tfkd.bench.run("student.tflite", threads=(1, 2))
    results = tfkd.bench.run("student.tflite", "adb", threads=(1, 4), delegate=("xnnpack", "gpu"))
    results = tfkd.bench.run("student.tflite", "ssh:pi@raspberrypi.local", tool="benchmark_model")

The path a run takes, one module per step (a setting goes from `delegate="gpu"` here to
"--use_gpu=true" on the device through settings -> tool_benchmark_model -> benchmark_tool ->
the target's `run`):

    run()                         this file: everything is checked before a device is contacted
      settings.py                 threads x delegates -> the plan; the vocabulary (DELEGATES)
      targets/__init__.py         TARGETS: target kind -> target module, and the module contract
      DRIVERS (this file)         tool -> driver; the tool and delegates are checked against the
                                  target module's TOOLS
      targets/<kind>.py           open(): the device, with describe/put/run/fetch/cleanup
        local.py | adb.py (adb_client, adb_device, adb_errors)
                 | ssh.py (ssh_connection, ssh_device, ssh_errors)
      tool_benchmark_model.py     driver: put the tool and model, run each setting, fetch CSVs
        benchmark_tool.py         build_args (a delegate -> the tool's flags), check_output
        benchmark_output.py       parse: the tool's text -> BenchResult (benchmark_failures.py:
                                  what in it means the run failed)
      tool_litert.py              driver: "litert" in this process (local.py) or the runner
                                  script (remote_runner.py) with the device's Python;
                                  "litert-benchmark" (local.py)
      results.py                  BenchResult; results.jsonl when output_dir= is given
    fetch.py                      the official prebuilt benchmark_model, downloaded and cached
    ssh.py                        `ssh.run`, the older entry point for ssh boards

A new target (an iOS device, an NPU board) is one module in targets/ and one entry in
`targets.TARGETS`; see `tfkd.bench.targets`.

Targets, their tools (the first is the default) and the delegates each runs:
    "local": "litert" (xnnpack, none), "litert-benchmark" (xnnpack), "benchmark_model" (xnnpack,
        gpu, none).
    "adb" (the only phone attached) or "adb:SERIAL": "benchmark_model" (xnnpack, gpu, nnapi,
        none); `python -m android_bench` is its command line.
    "ssh:user@host[:port]": "litert" (the runner script with the board's Python: xnnpack,
        none) or "benchmark_model" (xnnpack, gpu, none).
"""

import dataclasses
import os
from typing import Callable, Optional

from tfkd.bench import benchmark_tool, local, targets, tool_benchmark_model, tool_litert
from tfkd.bench import settings as vocabulary
from tfkd.bench.benchmark_tool import BenchmarkFailed
from tfkd.bench.fetch import fetch_benchmark_tool, platform_for_machine
from tfkd.bench.results import BenchResult, append_jsonl, read_jsonl, write_results
from tfkd.bench.settings import DELEGATES, thread_list

__all__ = ["BenchResult", "BenchmarkFailed", "DELEGATES", "DRIVERS", "TOOLS", "append_jsonl",
           "benchmark_tool", "check", "fetch_benchmark_tool", "local", "platform_for_machine",
           "read_jsonl", "run", "target_kind", "thread_list", "write_results"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One call of `tfkd.bench.run`, checked: what every driver gets.

    Attributes:
        model_path: the .tflite on this machine (BenchResult.model_path).
        plan: [(threads, delegate), ...], threads-major: one result each, in this order.
        warmup_runs, num_runs: untimed and timed inferences per setting.
        settings: the tool's own settings (min_secs, enable_op_profiling, seed, ...).
        benchmark_binary: a local benchmark_model binary, or None.
        output_dir: where files a tool produces (op-profiling CSVs) go; None: a temp folder.
        timeout_s: limit for each command on the target.
        kind: the target kind ("local", "adb", "ssh", ...).
    """

    model_path: str
    plan: list
    warmup_runs: int
    num_runs: int
    settings: dict
    benchmark_binary: Optional[str]
    output_dir: Optional[str]
    timeout_s: float
    kind: str


@dataclasses.dataclass(frozen=True)
class Driver:
    """A tool: the settings it takes, its check and its run."""

    settings: tuple
    check: Callable
    run: Callable


# The table: tool name -> driver. The first entry a target lists in its TOOLS is its default.
DRIVERS = {
    "litert": Driver(tool_litert.LITERT_SETTINGS, tool_litert.check, tool_litert.run),
    "litert-benchmark": Driver((), tool_litert.check_command, tool_litert.run_command),
    "benchmark_model": Driver(tool_benchmark_model.SETTINGS, tool_benchmark_model.check,
                              tool_benchmark_model.run),
}
TOOLS = tuple(DRIVERS)


def run(path, target="local", *, threads=(1, 2), delegate="xnnpack", tool=None, warmup_runs=5,
        num_runs=50, benchmark_binary=None, timeout_s=600, output_dir=None, **settings):
    """Benchmarks `path` once per (thread count, delegate), threads-major.

    Args:
        path: a .tflite file (any: tfkd's or one produced elsewhere).
        target: "local", "adb", "adb:SERIAL" or "ssh:user@host[:port]".
        threads: thread counts (an int or a sequence).
        delegate: one of DELEGATES ("xnnpack", "gpu", "nnapi", "none") or a sequence of them;
            a delegate the target's tool cannot run is a ValueError naming who can.
        tool: "litert", "litert-benchmark" or "benchmark_model", one the target runs; None:
            the target's default (see the module docstring).
        warmup_runs, num_runs: untimed and timed inferences per setting.
        benchmark_binary: path of a `benchmark_model` binary for the target's CPU; without
            one, tool="benchmark_model" uses the official prebuilt (downloaded once).
        timeout_s: limit for each command on the target.
        output_dir: if given, the results are appended to output_dir/results.jsonl once every
            setting succeeded, and op-profiling CSVs land there.
        **settings: the tool's settings: "benchmark_model": min_secs, enable_op_profiling,
            profiling_output_csv_file, report_peak_memory_footprint, extra_args; "litert":
            seed, min_secs (remote only). And the target's options: "adb": adb, taskset;
            "ssh": identity_file, config_file, ssh_options, connect_timeout_s, python.
            Deprecated, with a warning: use_xnnpack / use_gpu / use_nnapi, delegates.

    Returns:
        A list of `BenchResult`, threads-major (for t in threads: for d in delegates).

    Raises:
        ValueError, FileNotFoundError: a bad argument, before any device is contacted.
        BenchmarkFailed: the tool ran and failed (an op it lacks, a delegate that failed).
        The target's errors (AdbError, SshError, ...) when the device cannot be used.
    """
    delegate = vocabulary.take_legacy(settings, delegate, "tfkd.bench.run")
    plan = vocabulary.plan(threads, delegate)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}; pass the path of a .tflite file")
    kind = target_kind(target)
    module = targets.TARGETS[kind]
    tool = _choose(module, target, tool, plan)
    options, own = _split_settings(module, tool, target, settings)
    if tool != "benchmark_model" and benchmark_binary is not None:
        raise ValueError("benchmark_binary is used by tool='benchmark_model' only")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s!r}; pass a positive number of seconds")
    vocabulary.check_runs(warmup_runs, num_runs)
    job = Job(os.fspath(path), plan, warmup_runs, num_runs, own, benchmark_binary, output_dir,
              timeout_s, kind)
    driver = DRIVERS[tool]
    driver.check(job)
    with module.open(target, timeout_s=timeout_s, **options) as device:
        results = driver.run(device, job)
    if output_dir is not None:
        write_results(results, output_dir)
    return results


def check(target, *, delegate="xnnpack", tool=None):
    """Checks, contacting nothing, that `target` can run `delegate` with `tool`.

    Callers that benchmark after long work (the recipes time each student after training it)
    call this first, so a wrong target or delegate fails in a moment.

    Returns:
        The tool that would run: `tool`, or the target's default.

    Raises:
        ValueError: an unknown target form, tool or delegate, or a delegate the tool cannot
            run on that target; the message says which can.
    """
    plan = vocabulary.plan(1, delegate)
    return _choose(targets.TARGETS[target_kind(target)], target, tool, plan)


def target_kind(target):
    """"local", "adb" or "ssh" (a key of `targets.TARGETS`) for a target string.

    Raises:
        ValueError: no target takes that string; the message shows the forms.
    """
    return targets.kind_of(target)


def _choose(module, target, tool, plan):
    """The tool to run (the target's default when None), checked against the target's table.

    Raises:
        ValueError: the target cannot run that tool, or one of the plan's delegates with it;
            the message says which tools and targets can.
    """
    tool = tool or next(iter(module.TOOLS))
    if tool not in module.TOOLS or tool not in DRIVERS:
        raise ValueError(f"tool={tool!r} cannot run on target {target!r}; choose one of "
                         f"{tuple(module.TOOLS)}")
    runs = module.TOOLS[tool]
    for delegate in dict.fromkeys(d for _, d in plan):
        if delegate not in runs:
            raise ValueError(f"delegate={delegate!r} cannot run with tool={tool!r} on target "
                             f"{target!r}, which runs {', '.join(map(repr, runs))}; "
                             f"{delegate!r} runs with {_who_runs(delegate)}")
    return tool


def _who_runs(delegate):
    kinds = {}
    for kind, module in targets.TARGETS.items():
        for tool, delegates in module.TOOLS.items():
            if delegate in delegates:
                kinds.setdefault(tool, []).append(kind)
    return "; ".join(f"tool={tool!r} on {', '.join(k)} targets" for tool, k in kinds.items())


def _split_settings(module, tool, target, settings):
    """(target options, tool settings) from `settings`; ValueError naming any unknown one."""
    options = {k: v for k, v in settings.items() if k in module.OPTIONS}
    own = {k: v for k, v in settings.items() if k not in module.OPTIONS}
    unknown = sorted(k for k in own if k not in DRIVERS[tool].settings)
    if unknown:
        raise ValueError(f"tool={tool!r} on target {target!r} takes no settings {unknown}; it "
                         f"takes {list(DRIVERS[tool].settings)}, and the target the options "
                         f"{list(module.OPTIONS)}")
    return options, own
