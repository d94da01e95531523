"""Reading what the official TFLite `benchmark_model` tool prints into a `BenchResult`.

    result = parse(text)          # output captured anywhere (this machine, adb, ssh, logcat)

`parse` reads the output of the tool's versions from TF 1.x to current LiteRT: the `INFO: `-
prefixed lines of current builds and the bare lines of older ones, the TF 1.x summary line,
Android logcat lines, and stdout and stderr interleaved. Two rules keep it honest:

- Any line saying the run did not measure what was asked (an op the binary lacks, a delegate that
  failed to apply, "Benchmarking failed.": see `benchmark_failures`) raises `BenchmarkFailed`,
  even when timings were printed: such timings are not of the model and delegate asked for.
- A number the tool did not print is None, never 0. The tool prints `First inference: 0` when it
  made no warm-up runs, and `count=0 p5=0 median=0 p95=0` for an empty run: those become None.
"""

import collections
import math
import re

from tfkd.bench.benchmark_failures import (HOW_TO_GET, TAIL_LINES, BenchmarkFailed,
                                           UnparseableOutput, failure_reason, tail)
from tfkd.bench.results import BenchResult

TOOL = "benchmark_model"
__all__ = ["BenchmarkFailed", "HOW_TO_GET", "TAIL_LINES", "TOOL", "UnparseableOutput",
           "flag_name", "parse", "tail"]

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
_ELIDED = re.compile(r"^(?:\.\.\.|\u2026)\s*[\w.-]+\s*:\s?")
_SEVERITY = re.compile(r"^(INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG): ?")
# Echoed command lines hold the thread count when the tool does not print it.
_THREADS_FLAG = re.compile(r"--num_threads[= ](\d+)")


class _Line(collections.namedtuple("_Line", "severity msg number")):
    """One line of output: its severity ("" if none), its message and its line number."""


def flag_name(arg):
    """"num_threads" for "--num_threads=2"."""
    return arg.lstrip("-").split("=", 1)[0]


def parse(text):
    """The `BenchResult` in `benchmark_model` output (pure: text in, result out).

    Timings are converted from the tool's microseconds to milliseconds. init/first/warm-up/mean
    come from the `Inference timings in us:` summary line, the rest from the statistics line of
    the last `Running benchmark` block (the first block is the warm-up; without those headers,
    as in logcat captures of the Android app, the last statistics line and the one before it);
    if both give the mean and they disagree, the text mixes two runs and parsing fails.

    Where the text holds several runs (each from a `STARTING!` line), the last complete one is
    read; a later run cut off before its timings (an unplugged phone, a timed-out shell) is
    recorded in `extra["incomplete_runs"]` and a warning.

    Raises:
        BenchmarkFailed: the tool reported a failure in the last run, or no timed runs.
        UnparseableOutput: no run has a timing; the message says what the text is instead when
            it is recognizable (adb's or the shell's errors, another LiteRT tool's output).
    """
    lines = _lines(text)
    runs = _runs(lines)
    for cut_off, (start, run) in enumerate(reversed(runs)):
        try:
            result = _parse_run(run, lines[:start], text)
        except UnparseableOutput as error:
            if error.incomplete and cut_off < len(runs) - 1:
                continue  # cut off before its timings: the run before it may be whole
            raise
        if cut_off:
            note = (f"{cut_off} later run(s) in this output stopped before their timings "
                    "(device unplugged or shell timed out?); these numbers are of the last "
                    "complete run")
            result.extra["incomplete_runs"] = cut_off
            result.extra["warnings"] = [note, *result.extra.get("warnings", [])]
        return result
    raise UnparseableOutput(text)


def _parse_run(lines, before, text):
    """The `BenchResult` of one run's (severity, message) lines; `before` precedes the run."""
    reason = failure_reason(lines)
    if reason:
        raise BenchmarkFailed(reason, tail(text))
    params = _bracketed(lines)
    unconsumed = [flag for m in _matches(lines, r"Unconsumed cmdline flags:(.*)")
                  for flag in m[1].split()]
    missing = [f for f in unconsumed if flag_name(f) in _ESSENTIAL_FLAGS]
    if missing:
        raise BenchmarkFailed(f"this benchmark_model ignores {' '.join(missing)}, so it would not "
                              f"measure what was asked; use a newer build: {HOW_TO_GET}",
                              tail(text))
    timing, warmup_count = _timings(lines, text)
    extra = {"warmup_count": warmup_count, **_notes(lines)}
    if unconsumed:
        extra["unconsumed_flags"] = unconsumed
    return BenchResult(
        model_path=params.get("graph", ""), tool=TOOL, threads=_threads(params, before + lines),
        delegate=_delegate(params, lines), warmup_runs=_int(params.get("min warmup runs")),
        num_runs=_int(params.get("min num runs")), **timing, **_memory(lines),
        extra={k: v for k, v in extra.items() if v not in (None, [], {})})


def _lines(text):
    """(severity, message, line number) per non-blank line, log prefixes removed."""
    lines = []
    for number, raw in enumerate(text.splitlines()):
        severity, msg = "", raw.strip()
        for prefix in _PREFIXES:
            match = prefix.match(msg)
            if match:
                severity, msg = _LEVELS[match.group(1)], msg[match.end():].strip()
                break
        else:
            match = _ELIDED.match(msg)  # "... tflite  : msg", as the TFLite docs print logcat
            msg = msg[match.end():].strip() if match else msg
        match = _SEVERITY.match(msg)
        if match:
            severity = severity or match.group(1).replace("WARNING", "WARN")
            msg = msg[match.end():].strip()
        if msg:
            lines.append(_Line(severity, msg, number))
    return lines


def _runs(lines):
    """(index of its first line, its lines) for each run: from each STARTING! to the next (one
    run of every line when there is none)."""
    starts = [i for i, line in enumerate(lines) if line.msg == "STARTING!"] or [0]
    return [(a, lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)])]


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


def _matches(lines, pattern):
    """The matches of `pattern` (case-insensitive) at the start of each message, in order."""
    regex = re.compile(pattern, re.I)
    return [match for line in lines for match in [regex.match(line.msg)] if match]


def _last(lines, pattern, group=1):
    """Group `group` of the last message matching `pattern` as a number, or None."""
    found = _matches(lines, pattern)
    return _num(found[-1][group]) if found else None


def _bracketed(lines):
    """The tool's parameter lines, "Num threads: [4]" -> {"num threads": "4"}; the last wins."""
    return {" ".join(m[1].lower().split()): m[2].strip()
            for m in _matches(lines, r"([^\[\]:]+?)\s*:\s*\[(.*)\]$")}


def _threads(params, lines):
    """The tool's own "Num threads: [N]", else the last `--num_threads=N` echoed before."""
    threads = _int(params.get("#threads used for cpu inference", params.get("num threads")))
    if threads is None:
        echoed = [m[1] for line in lines for m in [_THREADS_FLAG.search(line.msg)] if m]
        threads = _int(echoed[-1]) if echoed else None
    return threads if threads is not None and threads >= 1 else None


def _run_blocks(lines):
    """(the statistics of each "Running benchmark for ..." block, None where it has no line;
    whether there were such headers).

    Without any such header (logcat captures of the Android benchmark app often keep only the
    statistics lines), each statistics line is a block of its own.
    """
    headers = any(line.msg.startswith("Running benchmark for") for line in lines)
    blocks, waiting, pairs = [], False, None
    for msg in (line.msg for line in lines):
        if msg.startswith("Running benchmark for"):
            blocks.append(None)
            waiting, pairs = True, None
        elif (waiting or not headers) and re.match(r"count=\d+", msg):
            # Only a line *starting* with count= counts: op-profiling tables print
            # "Timings (microseconds): count=..." lines of their own later on.
            pairs = _pairs(msg)
            if headers:
                blocks[-1] = _stat_line(pairs)
            else:
                blocks.append(_stat_line(pairs))
            waiting = False
        elif pairs is not None and re.match(r"(?:p\d+|median)=", msg):
            # Percentiles printed on a line of their own, after the statistics line.
            pairs.update(_pairs(msg))
            blocks[-1] = _stat_line(pairs)
        else:
            pairs = None
    return blocks, headers


def _pairs(msg):
    return {k.lower(): v for k, v in re.findall(rf"(\w+)=({_NUM})", msg, flags=re.I)}


def _stat_line(pairs):
    """{"count", "first", "min", "max", "avg", "std", "p5", "median", "p95"} in us (or None),
    from the name=value pairs of a statistics line."""
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
    blocks, headed = _run_blocks(lines)
    # With headers the first block is the warm-up; without, a lone line is the steady state.
    warm = (blocks[0] if len(blocks) >= 2 or (headed and blocks) else None) or {}
    steady = (blocks[-1] if len(blocks) >= 2 or (blocks and not headed) else None) or {}
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
                                  " and --max_secs, and that --dry_run is not set", tail(text))
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
    return {"warnings": list(dict.fromkeys(line.msg[:200] for line in lines
                                              if line.severity == "WARN"))[:10],
            "delegation": delegation,
            "model_size_mb": _last(lines, rf"The input model file size \(MB\): ({_NUM})")}
