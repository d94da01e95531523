"""The official TFLite `benchmark_model` tool: its arguments, and one run of it on this machine.

    result = run("/opt/benchmark_model", "student_int8.tflite", num_threads=2)
    result = parse(text)          # output captured elsewhere (adb, ssh, logcat)
    args = build_args("model.tflite", num_threads=2, delegate="gpu")

`build_args` is where a delegate name becomes the tool's flags (`delegate_flags`), for every
target; `check_output` turns an exit status and output into a result or a `BenchmarkFailed` that
says why, for every target. The parser itself is `tfkd.bench.benchmark_output`, and what counts
as a failed run `tfkd.bench.benchmark_failures`.
"""

import dataclasses
import os
import shlex
import shutil

from tfkd.bench import settings as vocabulary
from tfkd.bench.benchmark_output import (HOW_TO_GET, TAIL_LINES, TOOL, BenchmarkFailed,
                                         UnparseableOutput, flag_name, parse, tail)
from tfkd.bench.results import host_description
from tfkd.bench.targets.local import CommandTimeout, execute, status_text

__all__ = ["BenchmarkFailed", "DEFAULT_NUM_RUNS", "DEFAULT_WARMUP_RUNS", "TAIL_LINES", "TOOL",
           "UnparseableOutput", "build_args", "check_output", "delegate_flags", "parse", "run",
           "tail"]

DEFAULT_NUM_RUNS = 50
DEFAULT_WARMUP_RUNS = 5
# The tool's flags per delegate. An accelerator runs without XNNPACK, so the ops it does not take
# run on the builtin CPU kernels and the timing is of that delegate alone. Accelerator flags come
# first: the tool applies delegates in the order of their flags.
_DELEGATE_FLAGS = {
    "xnnpack": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true", "--use_xnnpack=false"),
    "nnapi": ("--use_nnapi=true", "--use_xnnpack=false"),
    "none": ("--use_xnnpack=false",),
}
_LEGACY = ("use_xnnpack", "use_gpu", "use_nnapi")


def delegate_flags(delegate):
    """The `benchmark_model` flags that run `delegate` (one of `tfkd.bench.DELEGATES`).

    `--use_xnnpack` is always explicit: set either way, it stops the runtime from applying its
    default XNNPACK delegate behind our back.
    """
    vocabulary.delegate_list(delegate)  # the error that lists the names
    return list(_DELEGATE_FLAGS[delegate])


def build_args(graph, *, num_threads, num_runs=DEFAULT_NUM_RUNS, warmup_runs=DEFAULT_WARMUP_RUNS,
               min_secs=None, delegate=None, enable_op_profiling=False,
               profiling_output_csv_file=None, report_peak_memory_footprint=True, extra_args=(),
               use_xnnpack=None, use_gpu=None, use_nnapi=None):
    """The `benchmark_model` arguments (argv after the binary) for one benchmark.

    `--warmup_min_secs=0` is always passed so warm-up is exactly `warmup_runs` runs (the tool's
    default keeps warming up for 0.5 s).

    Args:
        graph: the .tflite path as the tool will see it (one argv element, not quoted).
        num_threads: CPU threads, an int >= 1 (the tool's own default, -1, is ambiguous).
        num_runs, warmup_runs: timed runs (at least `min_secs` worth) and warm-up runs.
        min_secs: minimum seconds of timed runs; the tool's default (1 s) when None.
        delegate: one of `tfkd.bench.DELEGATES`; None means "xnnpack".
        enable_op_profiling: print per-op timings; `profiling_output_csv_file` writes them to CSV.
        report_peak_memory_footprint: sample the peak memory in a background thread.
        extra_args: further `--flag=value` strings, passed through.
        use_xnnpack, use_gpu, use_nnapi: deprecated (a DeprecationWarning): the tool's own
            flags, passed as they were before `delegate` existed.

    Raises:
        ValueError: a setting is out of range or contradicts another.
    """
    graph = os.fspath(graph)
    if not graph:
        raise ValueError("graph is empty; pass the path of the .tflite model to benchmark")
    vocabulary.check_count("num_threads", num_threads, 1,
                           "pass num_threads=1, 2, ... (os.cpu_count() for all)")
    vocabulary.check_runs(warmup_runs, num_runs)
    if min_secs is not None and (isinstance(min_secs, bool) or not isinstance(
            min_secs, (int, float)) or not min_secs >= 0):
        raise ValueError(f"min_secs must be a number >= 0 or None, got {min_secs!r}")
    if profiling_output_csv_file and not enable_op_profiling:
        raise ValueError("profiling_output_csv_file needs enable_op_profiling=True")
    flags = _flags(delegate, {"use_xnnpack": use_xnnpack, "use_gpu": use_gpu,
                              "use_nnapi": use_nnapi})
    args = [f"--graph={graph}", f"--num_threads={num_threads}", f"--num_runs={num_runs}",
            f"--warmup_runs={warmup_runs}", "--warmup_min_secs=0"]
    if min_secs is not None:
        args.append(f"--min_secs={min_secs:g}")
    args += flags
    if enable_op_profiling:
        args.append("--enable_op_profiling=true")
    if profiling_output_csv_file:
        args.append(f"--profiling_output_csv_file={os.fspath(profiling_output_csv_file)}")
    if report_peak_memory_footprint:
        args.append("--report_peak_memory_footprint=true")
    return args + _checked_extra(extra_args, args)


def _flags(delegate, legacy):
    legacy = {name: value for name, value in legacy.items() if value is not None}
    if not legacy:
        return delegate_flags(delegate or vocabulary.DEFAULT_DELEGATE)
    if delegate is not None:
        raise ValueError(f"pass delegate= alone, not with {sorted(legacy)}")
    given = ", ".join(f"{k}={v!r}" for k, v in legacy.items())
    vocabulary.warn(f"build_args({given}) is deprecated; pass delegate= one of "
                    f"{', '.join(vocabulary.DELEGATES)}", stacklevel=4)
    # Exactly the flags these keywords gave before, GPU and NNAPI together included.
    names = _legacy_names(legacy)
    return ([f"--use_{name}=true" for name in names if name != "xnnpack"]
            + [f"--use_xnnpack={'true' if 'xnnpack' in names else 'false'}"])


def _legacy_names(legacy):
    """The delegates the older use_* keywords ask for, in the order the tool applies them."""
    names = [name for name in ("gpu", "nnapi") if legacy.get(f"use_{name}")]
    return names + ([] if legacy.get("use_xnnpack") is False else ["xnnpack"])


def _asked(settings):
    """The delegate a run's settings asked for, in BenchResult words ("gpu+xnnpack" for the
    older keywords that asked for both)."""
    legacy = {name: settings[name] for name in _LEGACY if settings.get(name) is not None}
    if not legacy:
        return settings.get("delegate") or vocabulary.DEFAULT_DELEGATE
    return "+".join(_legacy_names(legacy)) or "none"


def _checked_extra(extra_args, args):
    if isinstance(extra_args, (str, bytes)):
        raise ValueError(f"extra_args must be a list of '--flag=value' strings, got {extra_args!r}")
    taken = {flag_name(a) for a in args}
    for arg in extra_args:
        if not isinstance(arg, str) or not arg.startswith("--"):
            raise ValueError(f"extra_args holds {arg!r}; each must be a '--flag=value' string")
        if flag_name(arg) in taken:
            raise ValueError(f"extra_args sets --{flag_name(arg)}, which build_args already "
                             f"sets; pass it as {flag_name(arg)}= instead")
    return list(extra_args)


def check_output(status, text, context=""):
    """The parsed result of one run of the tool, wherever it ran.

    Args:
        status: the exit status (128+N: killed by signal N).
        text: stdout and stderr, merged.
        context: where and how it ran, for the error, e.g. "on adb:SERIAL, threads=1,
            delegate=gpu".

    Raises:
        BenchmarkFailed: the output names a failure, or the status is not 0; the reason says
            which, with `context` and the status.
        UnparseableOutput: the tool exited 0 but printed no timing.
    """
    where = ", ".join(part for part in (context, status and status_text(status)) if part)
    try:
        parsed = parse(text)  # names the failure when the output shows one
    except BenchmarkFailed as error:
        raise BenchmarkFailed(f"{error.reason} ({where})" if where else error.reason,
                              error.tail) from None
    except UnparseableOutput:
        if status == 0:
            raise
        parsed = None
    if status != 0:
        raise BenchmarkFailed(f"benchmark_model failed ({where})", tail(text))
    return parsed


def run(binary, graph, *, timeout_s=600, **settings):
    """Runs a local `benchmark_model` binary on `graph` and parses its output.

    Args:
        binary: path to the tool (or a name on PATH).
        graph: the .tflite model on this machine.
        timeout_s: seconds before the tool (and anything it started) is killed.
        **settings: `build_args` keywords; `num_threads` is required.

    Returns:
        A stamped `BenchResult` with target "local" and the settings asked for.

    Raises:
        FileNotFoundError, PermissionError: the binary or model is missing / not executable.
        BenchmarkFailed: nonzero exit, timeout, or a failure in the output.
        UnparseableOutput: the tool succeeded but printed no timing.
    """
    args = build_args(graph, **settings)  # bad settings fail before anything else is checked
    argv = [_executable(binary), *args]
    graph = os.fspath(graph)
    if not os.path.isfile(graph):
        raise FileNotFoundError(f"model not found: {graph!r}; export one with "
                                "tfkd.export.to_tflite")
    if not timeout_s or timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    try:
        code, text = execute(argv, timeout_s)
    except CommandTimeout as error:
        raise BenchmarkFailed(f"benchmark_model timed out after {timeout_s} s and was killed; "
                              "raise timeout_s or lower num_runs/min_secs",
                              tail(error.output)) from None
    return _local_result(check_output(code, text), argv, graph, settings, text)


def _executable(binary):
    if not binary:
        raise ValueError(f"no benchmark_model binary given; {HOW_TO_GET}")
    path = os.fspath(binary)
    if os.sep not in path and not os.path.exists(path):
        path = shutil.which(path) or path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark_model binary not found: {path!r}; {HOW_TO_GET}")
    if not os.access(path, os.X_OK):
        raise PermissionError(f"{path} is not executable; run chmod +x {shlex.quote(path)}")
    return path


def _local_result(result, argv, graph, settings, text):
    """`result` with what this run asked for: target, settings, command line, host."""
    extra = dict(result.extra, argv=argv, raw_tail=tail(text))
    csv = settings.get("profiling_output_csv_file")
    if csv and os.path.isfile(csv):
        extra["op_profile_csv"] = os.fspath(csv)
    elif csv:
        extra["warnings"] = [*extra.get("warnings", []), f"no op-profiling CSV written to {csv}"]
    asked = _asked(settings)
    if result.delegate not in (None, asked):
        extra["reported_delegate"] = result.delegate  # what the tool says it used
    return dataclasses.replace(
        result, target="local", model_path=graph, runtime=TOOL, threads=settings["num_threads"],
        num_runs=settings.get("num_runs", DEFAULT_NUM_RUNS), delegate=asked,
        warmup_runs=settings.get("warmup_runs", DEFAULT_WARMUP_RUNS), device=host_description(),
        extra=extra).stamped()
