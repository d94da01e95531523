"""What happens to a study's answer after training: its TFLite export, checked, and its latency."""

import csv
import os

import tfkd

# The worst tensors of an int8 diagnosis kept in metrics.json (all go to a CSV beside it).
LAYER_ERRORS_KEPT = 20


def nothing():
    """The export and latency fields of a run that is not exported."""
    return {"tflite": {}, "bench": []}


def export_and_bench(config, student, run_dir, data):
    """Exports `student` as `config.quantization` asks, checks it, and times it on every target.

    Calibrates on training images (`data.calibration`) and evaluates on the test split, so the
    two never mix.

    Returns:
        The run's metrics fields: "tflite" (quantization -> path, bytes, accuracy, drop_points,
        passed, float_ops, activation_kb: the peak activation memory) and "bench" (a
        `BenchResult` dict per target, thread count and delegate); both empty with
        quantization "none".
    """
    if config.quantization == "none":
        return nothing()
    path = os.path.join(run_dir, f"student_{config.quantization}.tflite")
    # "auto" times its candidates where the study times its students: the first target,
    # thread count and delegate.
    first = (config.targets or ("local",))[0]
    check = tfkd.export.export_and_check(
        student, path, data.test, quantization=config.quantization,
        representative_data=data.calibration, max_drop_points=config.max_quantization_drop,
        target=first, threads=(config.bench_threads or (1,))[0], delegate=config.delegates[0],
        bench_options=config.bench_kwargs(first))
    record = {"path": path, "bytes": check.export.size_bytes,
              "accuracy": check.tflite_accuracy, "drop_points": check.drop_points,
              "passed": check.passed, "float_ops": check.export.float_ops,
              "activation_kb": _kb(check.export.peak_activation_bytes)}
    diagnosis = None
    if check.auto:
        record.update(chosen=check.auto["chosen"], reason=check.auto["reason"],
                      candidates=check.auto["candidates"])
        diagnosis = check.auto["diagnosis"]
    if config.diagnose_quantization and diagnosis is None:
        diagnosis = tfkd.quantization.diagnose(student, data.test,
                                               representative_data=data.calibration)
    if diagnosis is not None:
        record["layer_errors"] = diagnosis.to_rows()[:LAYER_ERRORS_KEPT]
        _write_csv(os.path.join(run_dir, "quantization_errors.csv"), diagnosis.to_rows())
    tflite = {config.quantization: record}
    bench = [result.to_dict() for target in config.targets
             for result in tfkd.bench.run(path, target, threads=config.bench_threads,
                                          delegate=config.delegates,
                                          **config.bench_kwargs(target))]
    return {"tflite": tflite, "bench": bench}


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["tensor"])
        writer.writeheader()
        writer.writerows(rows)


def _kb(size_bytes):
    return None if size_bytes is None else size_bytes / 1024
