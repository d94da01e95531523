"""Drive the official TFLite `benchmark_model` tool and parse what it prints into a `BenchResult`.

    result = run("/opt/benchmark_model", "student_int8.tflite", num_threads=2)
    result = parse(text)          # output captured elsewhere (adb, ssh, logcat)

`parse` reads the output of the tool's versions from TF 1.x to current LiteRT: the `INFO: `-
prefixed lines of current builds and the bare lines of older ones, the TF 1.x summary line,
Android logcat lines, and stdout and stderr interleaved. Two rules keep it honest:

- Any line saying the run did not measure what was asked (an op the binary lacks, a delegate that
  failed to apply or is unsupported, a node that failed to invoke, "Benchmarking failed.")
  raises `BenchmarkFailed`, even when timings were printed: such timings are not of the model and
  delegate asked for (a failed XNNPACK delegate silently falls back to the builtin kernels).
- A number the tool did not print is None, never 0. The tool prints `First inference: 0` when it
  made no warm-up runs, and `count=0 p5=0 median=0 p95=0` for an empty run: those become None.
"""

import dataclasses
import math
import os
import re
import shlex
import shutil
import signal
import subprocess

from tfkd.bench.results import BenchResult, host_description

TOOL = "benchmark_model"
DEFAULT_NUM_RUNS = 50
DEFAULT_WARMUP_RUNS = 5
TAIL_LINES = 20

_HOW_TO_GET = ("download one with tfkd.bench.fetch_benchmark_tool(platform) or pass "
               "--benchmark_binary=PATH (benchmark_binary= in Python)")
# Flags whose absence from an old binary changes what is measured (the tool only warns about
# flags it does not know and runs with its defaults).
_ESSENTIAL_FLAGS = {"graph", "num_threads", "num_runs", "warmup_runs", "min_secs", "use_xnnpack",
                    "use_gpu", "use_nnapi", "enable_op_profiling"}
# "Use gpu: [1]" parameter lines, in the order the tool applies delegates (accelerators first).
_DELEGATE_PARAMS = (("use gpu", "gpu"), ("use nnapi", "nnapi"), ("use hexagon", "hexagon"),
                    ("use coreml", "coreml"), ("use xnnpack", "xnnpack"))

# C++ streams print doubles as %g: 1231.45, 1.24027e+06, nan, -nan, inf.
_NUM = r"[-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
_LEVELS = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL",
           "A": "FATAL"}
_PREFIXES = (
    # logcat -v threadtime: "11-21 10:15:02.123  4567  4567 I tflite  : msg"
    re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+([VDIWEFA])\s+[^:]*:\s?"),
    # logcat -v brief/time/tag: "I/tflite  ( 4567): msg", "11-21 10:15:02.123 I/tflite( 4567): msg"
    re.compile(r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?([VDIWEFA])/[^(:\s]*\s*(?:\(\s*\d+\))?"
               r"\s*:\s?"),
    # absl / TF C++ logging: "I0000 00:00:1732200000.123456  4567 file.cc:42] msg"
    re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]*\]\s?"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) [^\]]*\]\s?"),
)
_SEVERITY = re.compile(r"^(INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG): ?")


class BenchmarkFailed(RuntimeError):
    """`benchmark_model` failed, or ran without measuring what was asked.

    Attributes:
        reason: one line saying what went wrong and, where known, what to do.
        tail: the last lines of the tool's output.
    """

    def __init__(self, reason, tail=""):
        super().__init__(reason, tail)
        self.reason = reason
        self.tail = tail

    def __str__(self):
        if not self.tail:
            return self.reason
        return f"{self.reason}\nLast lines of benchmark_model output:\n{self.tail}"


class UnparseableOutput(ValueError):
    """The output has no timing this parser recognizes; `text` keeps the whole output."""

    def __init__(self, text, detail=""):
        self.text = text
        detail = f" ({detail})" if detail else ""
        super().__init__(
            f"benchmark_model output has no recognizable timing{detail}: expected an "
            "'Inference timings in us: ...' line or a 'count=N ... avg=...' statistics line after "
            "the second 'Running benchmark for ...' line. Last lines of output:\n"
            f"{_tail(text) or '(no output)'}")


def build_args(graph, *, num_threads, num_runs=DEFAULT_NUM_RUNS, warmup_runs=DEFAULT_WARMUP_RUNS,
               min_secs=None, use_xnnpack=True, use_gpu=False, use_nnapi=False,
               enable_op_profiling=False, profiling_output_csv_file=None,
               report_peak_memory_footprint=True, extra_args=()):
    """The `benchmark_model` arguments (argv after the binary) for one benchmark.

    `--warmup_min_secs=0` is always passed so warm-up is exactly `warmup_runs` runs (the tool's
    default keeps warming up for 0.5 s). `--use_xnnpack` is always explicit: set either way, it
    stops the runtime from applying its default XNNPACK delegate behind our back. Accelerator
    flags come before it because the tool applies delegates in the order of their flags.

    Args:
        graph: the .tflite path as the tool will see it (one argv element, not quoted).
        num_threads: CPU threads, an int >= 1 (the tool's own default, -1, is ambiguous).
        num_runs, warmup_runs: timed runs (at least `min_secs` worth) and warm-up runs.
        min_secs: minimum seconds of timed runs; the tool's default (1 s) when None.
        use_xnnpack, use_gpu, use_nnapi: delegates to apply.
        enable_op_profiling: print per-op timings; `profiling_output_csv_file` writes them to CSV.
        report_peak_memory_footprint: sample the peak memory in a background thread.
        extra_args: further `--flag=value` strings, passed through.

    Raises:
        ValueError: a setting is out of range or contradicts another.
    """
    graph = os.fspath(graph)
    if not graph:
        raise ValueError("graph is empty; pass the path of the .tflite model to benchmark")
    _check_int("num_threads", num_threads, 1, "pass num_threads=1, 2, ... (os.cpu_count() for all)")
    _check_int("num_runs", num_runs, 1, "pass num_runs=50 for example")
    _check_int("warmup_runs", warmup_runs, 0, "pass warmup_runs=0 for no warm-up")
    if min_secs is not None and (isinstance(min_secs, bool) or not isinstance(
            min_secs, (int, float)) or not min_secs >= 0):
        raise ValueError(f"min_secs must be a number >= 0 or None, got {min_secs!r}")
    if profiling_output_csv_file and not enable_op_profiling:
        raise ValueError("profiling_output_csv_file needs enable_op_profiling=True")
    args = [f"--graph={graph}", f"--num_threads={num_threads}", f"--num_runs={num_runs}",
            f"--warmup_runs={warmup_runs}", "--warmup_min_secs=0"]
    if min_secs is not None:
        args.append(f"--min_secs={min_secs:g}")
    args += [f"--use_{name}=true" for name, on in (("gpu", use_gpu), ("nnapi", use_nnapi)) if on]
    args.append(f"--use_xnnpack={'true' if use_xnnpack else 'false'}")
    if enable_op_profiling:
        args.append("--enable_op_profiling=true")
    if profiling_output_csv_file:
        args.append(f"--profiling_output_csv_file={os.fspath(profiling_output_csv_file)}")
    if report_peak_memory_footprint:
        args.append("--report_peak_memory_footprint=true")
    return args + _checked_extra(extra_args, args)


def _check_int(name, value, minimum, hint):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}; {hint}")


def _checked_extra(extra_args, args):
    if isinstance(extra_args, (str, bytes)):
        raise ValueError(f"extra_args must be a list of '--flag=value' strings, got {extra_args!r}")
    taken = {_flag_name(a) for a in args}
    for arg in extra_args:
        if not isinstance(arg, str) or not arg.startswith("--"):
            raise ValueError(f"extra_args holds {arg!r}; each must be a '--flag=value' string")
        if _flag_name(arg) in taken:
            raise ValueError(f"extra_args sets --{_flag_name(arg)}, which build_args already "
                             f"sets; pass it as {_flag_name(arg)}= instead")
    return list(extra_args)


def _flag_name(arg):
    return arg.lstrip("-").split("=", 1)[0]


def parse(text):
    """The `BenchResult` in `benchmark_model` output (pure: text in, result out).

    Timings are converted from the tool's microseconds to milliseconds. init/first/warm-up/mean
    come from the `Inference timings in us:` summary line, the rest from the statistics line of
    the last `Running benchmark` block (the first block is the warm-up); if both give the mean
    and they disagree, the text mixes two runs and parsing fails. Where the text holds several
    runs (a logcat buffer), only the last `STARTING!` onwards is read.

    Raises:
        BenchmarkFailed: the tool reported a failure, or no timed runs.
        UnparseableOutput: no timing found.
    """
    lines = _lines(text)
    reason = _failure_reason(lines)
    if reason:
        raise BenchmarkFailed(reason, _tail(text))
    params = _bracketed(lines)
    unconsumed = [flag for m in _matches(lines, r"Unconsumed cmdline flags:(.*)")
                  for flag in m[1].split()]
    missing = [f for f in unconsumed if _flag_name(f) in _ESSENTIAL_FLAGS]
    if missing:
        raise BenchmarkFailed(f"this benchmark_model ignores {' '.join(missing)}, so it would not "
                              f"measure what was asked; use a newer build: {_HOW_TO_GET}",
                              _tail(text))
    timing, warmup_count = _timings(lines, text)
    extra = {"warmup_count": warmup_count, **_notes(lines)}
    if unconsumed:
        extra["unconsumed_flags"] = unconsumed
    return BenchResult(
        model_path=params.get("graph", ""), tool=TOOL, threads=_threads(params),
        delegate=_delegate(params, lines), warmup_runs=_int(params.get("min warmup runs")),
        num_runs=_int(params.get("min num runs")), **timing, **_memory(lines),
        extra={k: v for k, v in extra.items() if v not in (None, [], {})})


def _lines(text):
    """(severity, message) per non-blank line, log prefixes removed, from the last STARTING!."""
    lines = []
    for raw in text.splitlines():
        severity, msg = "", raw.strip()
        for prefix in _PREFIXES:
            match = prefix.match(msg)
            if match:
                severity, msg = _LEVELS[match.group(1)], msg[match.end():].strip()
                break
        match = _SEVERITY.match(msg)
        if match:
            severity = severity or match.group(1).replace("WARNING", "WARN")
            msg = msg[match.end():].strip()
        if msg:
            lines.append((severity, msg))
    starts = [i for i, (_, msg) in enumerate(lines) if msg == "STARTING!"]
    return lines[starts[-1]:] if starts else lines


def _tail(text, n=TAIL_LINES):
    return "\n".join([line.rstrip() for line in text.splitlines() if line.strip()][-n:])


def _num(token):
    """A finite float, or None for nan/inf/garbage (the tool prints nan for empty statistics)."""
    try:
        value = float(token)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _int(token):
    value = _num(token)
    return int(value) if value is not None else None


def _ms(us):
    return None if us is None else us / 1000.0


# Failure markers, most specific first: the first that matches gives the reason (\1 etc. are
# the pattern's groups, {flex} the Flex ops named in "Node number N (FlexOp) failed" lines).
_FAILURES = tuple((re.compile(pattern), template) for pattern, template in (
    (r"Encountered unresolved custom op: ([^\s.]+)", r"the model uses custom op \1, which this "
     "benchmark_model lacks: export the model without custom ops, or build the tool with the op"),
    (r"Select TensorFlow op\(s\).*not supported|Regular TensorFlow ops are not supported",
     "the model uses Select TensorFlow (Flex) ops{flex}, which this benchmark_model cannot run: "
     "export with supported_ops=[TFLITE_BUILTINS(_INT8)] only, or use benchmark_model_plus_flex"),
    (r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", r"this benchmark_model has no "
     rf"kernel for \1 version \2; it is older than the model's converter: {_HOW_TO_GET}"),
    (r"Op builtin_code out of range: (\d+)", r"this benchmark_model does not know builtin op "
     rf"code \1; it is older than the model's converter: {_HOW_TO_GET}"),
    (r"Node number (\d+) \(([^)]+)\) failed to (prepare|invoke)", r"node \1 (\2) failed to \3"),
    (r"(?:Failed to apply|Ignoring failed application of) (?:the )?(.+?) delegate",
     r"failed to apply the \1 delegate, so the timings would not be of the delegate asked for"),
    (r"(GPU|NNAPI) acceleration is unsupported on this platform", r"the \1 delegate was asked "
     "for but is unsupported on this platform (the tool would have run on the CPU)"),
    (r"Disallowed CPU fallback detected", "the delegate did not take the whole graph"),
    (r"Failed to allocate tensors", "failed to allocate tensors"),
    (r"Could not open '([^']*)'", r"could not open or load the model \1"),
    (r"Failed to (?:mmap|load) model (.+)", r"could not open or load the model \1"),
    (r"Model provided has model identifier|not a valid Flatbuffer|model is not a valid",
     "the model is not a valid .tflite flatbuffer"),
    (r"Failed to construct interpreter|Failed to initialize the interpreter",
     "failed to construct the interpreter"),
    (r"Please specify the name of your TF Lite input file", "no --graph was given"),
    (r"Failed to invoke", "the interpreter failed to invoke the model"),
))


def _failure_reason(lines):
    """The most specific failure the output reports, or None."""
    flex = sorted({m[1] for m in _matches(lines, r".*Node number \d+ \((Flex\w+)\)")})
    for pattern, template in _FAILURES:
        for _, msg in lines:
            match = pattern.search(msg)
            if match:
                return match.expand(template).replace("{flex}", f" ({', '.join(flex)})"
                                                      if flex else "")
    fatal = [msg for severity, msg in lines if severity == "FATAL"]
    if fatal:
        return f"benchmark_model aborted: {fatal[0]}"
    if _matches(lines, "Benchmarking failed"):
        errors = [msg for severity, msg in lines
                  if severity == "ERROR" and not msg.startswith("Benchmarking failed")]
        return "benchmark_model failed" + (f": {errors[0]}" if errors else "")
    return None


def _matches(lines, pattern):
    """The matches of `pattern` (case-insensitive) at the start of each message, in order."""
    regex = re.compile(pattern, re.I)
    return [match for _, msg in lines for match in [regex.match(msg)] if match]


def _last(lines, pattern, group=1):
    """Group `group` of the last message matching `pattern` as a number, or None."""
    found = _matches(lines, pattern)
    return _num(found[-1][group]) if found else None


def _bracketed(lines):
    """The tool's parameter lines, "Num threads: [4]" -> {"num threads": "4"}; the last wins."""
    return {" ".join(m[1].lower().split()): m[2].strip()
            for m in _matches(lines, r"([^\[\]:]+?)\s*:\s*\[(.*)\]$")}


def _threads(params):
    threads = _int(params.get("#threads used for cpu inference", params.get("num threads")))
    return threads if threads is not None and threads >= 1 else None


def _run_blocks(lines):
    """The statistics of each "Running benchmark for ..." block, None where it has no line."""
    blocks, waiting = [], False
    for _, msg in lines:
        if msg.startswith("Running benchmark for"):
            blocks.append(None)
            waiting = True
        elif waiting and re.match(r"count=\d+", msg):
            # Only a line *starting* with count= counts: op-profiling tables print
            # "Timings (microseconds): count=..." lines of their own later on.
            blocks[-1], waiting = _stat_line(msg), False
    return blocks


def _stat_line(msg):
    """{"count", "first", "min", "max", "avg", "std", "p5", "median", "p95"} in us (or None)."""
    pairs = dict(re.findall(rf"(\w+)=({_NUM})", msg, flags=re.I))
    stat = {"count": _int(pairs.get("count"))}
    if not stat["count"]:
        return stat  # an empty Stat prints p5=0 median=0 p95=0: not measurements
    if "min" not in pairs:  # "count=N curr=V(all same)" or "count=1 curr=V": every run took V
        value = _num(pairs.get("curr"))
        stat.update(dict.fromkeys(("first", "min", "max", "avg", "p5", "median", "p95"), value),
                    std=None if value is None else 0.0)
        return stat
    stat.update({key: _num(pairs.get(key)) for key in
                 ("first", "min", "max", "avg", "std", "p5", "median", "p95")})
    return stat


def _summary(lines):
    """The last end-of-run summary line as {"init": us, ...}, in either wording."""
    found = _matches(lines, r"(?:Average )?inference timings in us:(.*)$")
    if not found:
        return {}
    pairs = re.findall(rf"([a-z][a-z ()]*?)\s*:\s*({_NUM})", found[-1][1], flags=re.I)
    return {key.strip().lower(): _num(value) for key, value in pairs}


def _timings(lines, text):
    """The BenchResult timing fields in ms and the warm-up run count."""
    blocks = _run_blocks(lines)
    warm = (blocks[0] if blocks else None) or {}
    steady = (blocks[-1] if len(blocks) >= 2 else None) or {}
    summary = _summary(lines)
    mean = _first(summary, "inference (avg)", "no stats", "inference")
    if mean is not None and steady.get("avg") is not None and not math.isclose(
            mean, steady["avg"], rel_tol=1e-4, abs_tol=0.5):
        raise UnparseableOutput(text, f"the summary mean {mean} us and the statistics line "
                                      f"avg={steady['avg']} us disagree: is this two runs' output?")
    mean = _pick(mean, steady.get("avg"))
    if mean is None:
        if steady.get("count") == 0:
            raise BenchmarkFailed("benchmark_model made no timed runs (count=0); check --num_runs"
                                  " and --max_secs, and that --dry_run is not set", _tail(text))
        raise UnparseableOutput(text)
    no_warmup = warm.get("count") == 0  # the tool then prints "First inference: 0"
    timing = {
        "init_ms": _pick(_ms(summary.get("init")),
                         _last(lines, rf"Initialized session in ({_NUM})\s*ms")),
        "first_ms": None if no_warmup else _ms(_pick(summary.get("first inference"),
                                                     warm.get("first"))),
        "warmup_ms": None if no_warmup else _ms(_pick(_first(summary, "warmup (avg)", "warmup"),
                                                      warm.get("avg"))),
        "mean_ms": _ms(mean), "count": steady.get("count"),
    }
    timing.update({f"{key}_ms": _ms(steady.get(key))
                   for key in ("median", "p5", "p95", "std", "min", "max")})
    return timing, warm.get("count")


def _first(mapping, *keys):
    return _pick(*(mapping.get(k) for k in keys))


def _pick(*values):
    """The first value that is not None (0 is a value, unlike with `or`)."""
    return next((v for v in values if v is not None), None)


def _memory(lines):
    delta = (r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
             rf"\(MB\): init=({_NUM}) overall=({_NUM})")
    return {"memory_init_mb": _last(lines, delta, 1), "memory_overall_mb": _last(lines, delta, 2),
            "peak_memory_mb": _last(lines, r"Overall peak memory footprint \(MB\) via periodic "
                                           rf"monitoring: ({_NUM})")}


def _delegate(params, lines):
    """"xnnpack", "gpu+xnnpack", "none" (delegates turned off), or None (not reported)."""
    used = [name for key, name in _DELEGATE_PARAMS if params.get(key) in ("1", "true")]
    applied = [m[1].lower() for m in _matches(lines, r"Explicitly applied (\S+) delegate")]
    if _matches(lines, "Created TensorFlow Lite XNNPACK delegate"):
        applied.append("xnnpack")  # also the runtime's implicit default delegate
    used += [name for name in dict.fromkeys(applied) if name not in used]
    if used:
        return "+".join(used)
    return "none" if any(params.get(key) in ("0", "false") for key, _ in _DELEGATE_PARAMS) else None


def _notes(lines):
    """Warnings, how much of the graph each delegate took, and the model size."""
    delegation = {}
    for m in _matches(lines, r"Explicitly applied (\S+) delegate.*?(completely|partially)"
                             r"(?:.*?w/ (\d+) delegate kernels)?"
                             r"|Though (\S+) delegate is explicitly applied"):
        coverage = {"completely": "full", "partially": f"partial ({m[3]} delegate kernels)"}
        delegation[(m[1] or m[4]).lower()] = coverage.get(m[2], "none")
    return {"warnings": list(dict.fromkeys(msg[:200] for sev, msg in lines if sev == "WARN"))[:10],
            "delegation": delegation,
            "model_size_mb": _last(lines, rf"The input model file size \(MB\): ({_NUM})")}


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
    code, text = _execute(argv, timeout_s)
    if code != 0:
        reason = _failure_reason(_lines(text))
        status = _exit_status(code)
        raise BenchmarkFailed(f"{reason} ({status})" if reason else f"benchmark_model failed "
                              f"({status})", _tail(text))
    return _local_result(parse(text), argv, graph, settings, text)


def _exit_status(code):
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _executable(binary):
    if not binary:
        raise ValueError(f"no benchmark_model binary given; {_HOW_TO_GET}")
    path = os.fspath(binary)
    if os.sep not in path and not os.path.exists(path):
        path = shutil.which(path) or path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark_model binary not found: {path!r}; {_HOW_TO_GET}")
    if not os.access(path, os.X_OK):
        raise PermissionError(f"{path} is not executable; run chmod +x {shlex.quote(path)}")
    return path


def _execute(argv, timeout_s):
    """(exit status, stdout and stderr merged); kills the tool's process group on timeout."""
    # A session of its own, so a timeout kills the tool and anything it started (a wrapper
    # script's children would otherwise keep the pipe open and hang us).
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _ = proc.communicate()
            raise BenchmarkFailed(f"benchmark_model timed out after {timeout_s} s and was killed; "
                                  "raise timeout_s or lower num_runs/min_secs",
                                  _tail(out.decode("utf-8", "replace"))) from None
    return proc.returncode, out.decode("utf-8", "replace")


def _local_result(result, argv, graph, settings, text):
    """`result` with what this run asked for: target, settings, command line, host."""
    extra = dict(result.extra, argv=argv, raw_tail=_tail(text))
    csv = settings.get("profiling_output_csv_file")
    if csv and os.path.isfile(csv):
        extra["op_profile_csv"] = os.fspath(csv)
    elif csv:
        extra["warnings"] = [*extra.get("warnings", []), f"no op-profiling CSV written to {csv}"]
    asked = "+".join(name for name in ("gpu", "nnapi", "xnnpack")
                     if settings.get(f"use_{name}", name == "xnnpack")) or "none"
    if result.delegate not in (None, asked):
        extra["reported_delegate"] = result.delegate  # what the tool says it used
    return dataclasses.replace(
        result, target="local", model_path=graph, runtime=TOOL, threads=settings["num_threads"],
        num_runs=settings.get("num_runs", DEFAULT_NUM_RUNS), delegate=asked,
        warmup_runs=settings.get("warmup_runs", DEFAULT_WARMUP_RUNS), device=host_description(),
        extra=extra).stamped()
