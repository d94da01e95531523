"""`export_and_check(..., quantization="auto")`: the fastest export, measured on the target,
that keeps the accuracy within budget.

Candidates, in order: full int8; when int8 loses more than the budget, int8 with the worst
tensors of `tfkd.quantization.diagnose` kept in float, a few more each step; then dynamic-range,
float16 and float32. Each is exported, evaluated on the test images with LiteRT and timed with
`tfkd.bench.run` on the target; the winner is the fastest that meets the budget (float32 always
does: it is the reference). int8 is not assumed to be faster: on x86 with XNNPACK a small
transformer runs several times slower in int8 than in float, and the choice then says so.
"""

import dataclasses
import os
import shutil
import tempfile

from tfkd import bench, quantization

# How many of the worst tensors each repair step keeps in float.
REPAIR_STEPS = (1, 3, 8)
_FALLBACKS = ("dynamic", "float16", "float32")


@dataclasses.dataclass
class Candidate:
    """One export `auto` tried."""

    name: str              # "int8", "int8+float[3]", "dynamic", ...
    quantization: str
    keep_float: list
    accuracy: float
    drop_points: float
    passed: bool
    size_bytes: int
    median_ms: float


def choose(model, path, dataset, *, representative_data, num_calibration_samples,
           max_drop_points, num_threads, target, threads, delegate, bench_options=None):
    """Tries the candidates; writes the winner to `path`.

    Returns:
        (CheckResult of the winner, {"target", "threads", "delegate", "candidates": [dict],
        "chosen", "reason", "diagnosis": the `Diagnosis` when int8 needed repairs, else None}).
    """
    from tfkd import export  # noqa: PLC0415 - export calls this module

    if representative_data is None:  # as export_and_check does: calibrate on the dataset
        representative_data = dataset
    tried, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:

        def attempt(name, quantization_mode, keep_float=None):
            file = os.path.join(tmp, f"{len(tried)}.tflite")
            check = export.export_and_check(
                model, file, dataset, quantization=quantization_mode,
                representative_data=representative_data, keep_float=keep_float,
                num_calibration_samples=num_calibration_samples,
                max_drop_points=max_drop_points, num_threads=num_threads, warn=False)
            (timing,) = bench.run(file, target, threads=threads, delegate=delegate,
                                  **(bench_options or {}))
            tried.append(Candidate(
                name=name, quantization=quantization_mode, keep_float=list(keep_float or []),
                accuracy=check.tflite_accuracy, drop_points=check.drop_points,
                passed=check.passed, size_bytes=check.export.size_bytes,
                median_ms=timing.median_ms))
            checks[name] = check
            return check

        diagnosis = None
        if not attempt("int8", "int8").passed:
            diagnosis = _repair(model, dataset, representative_data, num_calibration_samples,
                                attempt)
        for mode in _FALLBACKS:
            attempt(mode, mode)
        # float32 loses nothing but LiteRT's rounding; should even it miss, it is the answer.
        within = [c for c in tried if c.passed] or [tried[-1]]
        winner = min(within, key=lambda c: (c.median_ms, c.size_bytes))
        chosen = checks[winner.name]
        _copy_atomically(chosen.export.path, os.fspath(path))
    chosen.export.path = str(path)
    return chosen, {"target": target, "threads": threads, "delegate": delegate,
                    "candidates": [dataclasses.asdict(c) for c in tried],
                    "chosen": winner.name, "reason": _reason(winner, tried, max_drop_points,
                                                             target, threads),
                    "diagnosis": diagnosis}


def _copy_atomically(source, path):
    """Copies to a new name beside `path`, then renames: never a truncated file at `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = f"{path}.{os.getpid()}.part"
    try:
        shutil.copyfile(source, part)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


def _repair(model, dataset, representative_data, num_calibration_samples, attempt):
    """int8 with the worst tensors in float, a few more each step, until one passes; returns
    the `Diagnosis` that guided it."""
    diagnosis = quantization.diagnose(model, dataset, representative_data=representative_data,
                                      num_calibration_samples=num_calibration_samples)
    for count in REPAIR_STEPS:
        worst = diagnosis.worst(count)
        if not worst or attempt(f"int8+float[{len(worst)}]", "int8", worst).passed:
            break
    return diagnosis


def _reason(winner, tried, budget, target, threads):
    within = [c for c in tried if c.passed]
    text = (f"{winner.name} is the fastest of the {len(within)} exports within "
            f"{budget} points ({winner.median_ms:.3f} ms at {threads} thread(s) on {target}, "
            f"drop {winner.drop_points:.2f} points)")
    by_name = {c.name: c for c in tried}
    int8, float32 = by_name.get("int8"), by_name.get("float32")
    if int8 and float32 and int8.median_ms > float32.median_ms:
        text += (f"; int8 is slower than float32 on this target ({int8.median_ms:.3f} ms vs "
                 f"{float32.median_ms:.3f} ms)")
    if int8 and not int8.passed:
        text += f"; full int8 lost {int8.drop_points:.2f} points"
    return text
