"""Timing helpers shared by the benchmarks: interleaved rounds, summaries, ratios, results entries.

Every benchmark compares two or more things measured in the same process. Machines drift (other
processes, thermal limits, frequency scaling), so instead of timing A many times and then B many
times, each round calls every candidate once and the start of the order rotates from round to
round. Round i of A and round i of B then saw nearly the same machine, and a ratio is taken per
round before taking the median (`ratio`).

    times = interleaved({"kd": kd_step, "student": student_step}, rounds=7)
    overhead = ratio(times["kd"], times["student"])          # median of per-round ratios
    results = {"kd_step_overhead": entry(overhead, 1.05, {"kd": summary(times["kd"])})}
"""

import statistics
import time

_SIGNIFICANT_DIGITS = 6


def rotated(names, round_index):
    """`names` in the order round `round_index` calls them: starting at index r % n, wrapping."""
    names = list(names)
    if not names:
        return names
    start = round_index % len(names)
    return names[start:] + names[:start]


def interleaved_values(fns, rounds, warmup=1):
    """Calls every function once per round in rotated order and collects what each returns.

    Use this where the callable measures itself (a benchmark tool returning its median latency);
    `interleaved` is the same loop timing each call from outside.

    Args:
        fns: dict name -> zero-argument callable.
        rounds: recorded rounds (>= 1).
        warmup: unrecorded calls of each function before the first round (>= 0), so one-off
            costs (tracing, compiling, caches) stay out of the numbers.

    Returns:
        dict name -> list of return values, one per round, in round order.
    """
    _check_args(fns, rounds, warmup)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    values = {name: [] for name in fns}
    for r in range(rounds):
        for name in rotated(fns, r):
            values[name].append(fns[name]())
    return values


def interleaved(fns, rounds, warmup=1):
    """Times every function once per round, rotating the start of the order each round.

    Round r calls the functions starting at index r % len(fns), so no function always runs
    first (after an idle machine) or last (after the others heated it up).

    Args:
        fns: dict name -> zero-argument callable doing a fixed amount of work.
        rounds: recorded rounds (>= 1).
        warmup: unrecorded calls of each function before the first round (>= 0).

    Returns:
        dict name -> list of wall-clock seconds (`time.perf_counter`), one per round.
    """
    def timed(fn):
        def call():
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        return call

    _check_args(fns, rounds, warmup)
    return interleaved_values({name: timed(fn) for name, fn in fns.items()}, rounds, warmup)


def _check_args(fns, rounds, warmup):
    if not isinstance(fns, dict) or not fns:
        raise ValueError(f"fns must be a non-empty dict name -> callable, got {fns!r}")
    bad = [name for name, fn in fns.items() if not callable(fn)]
    if bad:
        raise ValueError(f"fns[{bad[0]!r}] is not callable; pass zero-argument functions")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}; pass an int >= 1 (5-10 is usual)")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r}; pass an int >= 0")


def rounded(x):
    """`x` to 6 significant digits: sub-millisecond times keep their precision, JSON stays short."""
    return float(f"{float(x):.{_SIGNIFICANT_DIGITS}g}")


def summary(seconds):
    """The statistics stored for one list of timings.

    Returns:
        {"median_s", "min_s", "max_s", "rounds", "samples_s"}; samples are the raw list, each
        rounded to 6 significant digits.
    """
    seconds = _non_empty(seconds, "seconds")
    return {"median_s": rounded(statistics.median(seconds)), "min_s": rounded(min(seconds)),
            "max_s": rounded(max(seconds)), "rounds": len(seconds),
            "samples_s": [rounded(s) for s in seconds]}


def ratio(a, b):
    """The median of the per-round ratios a[i] / b[i]: the ratio every benchmark reports.

    Interleaving makes a[i] and b[i] neighbours in time, so each pair saw the same machine
    state; a drift that slows a whole round cancels in its ratio, which a ratio of the two
    overall medians (`ratio_of_medians`) does not guarantee.
    """
    a, b = _non_empty(a, "a"), _non_empty(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} rounds but b has {len(b)}; per-round ratios need the "
                         "same rounds, e.g. both from one interleaved() call")
    if any(x <= 0 for x in b):
        raise ValueError("b holds a value <= 0; timings and rates must be positive")
    return statistics.median(x / y for x, y in zip(a, b))


def ratio_of_medians(a, b):
    """median(a) / median(b): a cross-check of `ratio`, and the only choice for unpaired lists."""
    a, b = _non_empty(a, "a"), _non_empty(b, "b")
    return statistics.median(a) / statistics.median(b)


def _non_empty(values, what):
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{what} is empty; measure at least one round")
    return values


def entry(value, target, raw, better="lower", note=None):
    """The dict stored under one key of results.json.

    Args:
        value: the headline number (a ratio, say), or a table (list of row dicts) for
            benchmarks that report without a target.
        target: the bound `value` should meet, or None for no target.
        raw: the measurements behind `value` (summaries, per-round samples, settings).
        better: "lower" (target reads "<= X") or "higher" (">= X").
        note: one or two sentences on how to read the number.

    Returns:
        {"value", "target", "passed", "raw", "note"}; `passed` is None without a target.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better={better!r}; pass 'lower' or 'higher'")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    passed = None
    if target is not None:
        if not isinstance(value, float):
            raise ValueError(f"a target needs a numeric value, got {type(value).__name__}; "
                             "pass target=None for tables")
        passed = value <= target if better == "lower" else value >= target
        target = f"{'<=' if better == 'lower' else '>='} {target:g}"
    return {"value": value, "target": target, "passed": passed, "raw": raw, "note": note}
