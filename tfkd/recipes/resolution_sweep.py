"""Resolution sweep: one teacher, one student architecture distilled at several input sizes.

Command (the main job; `make demo` runs it with these defaults):

    python -m tfkd.recipes.resolution_sweep [--resolutions=32,48,64] [--student=...]

With no flags it trains a `convnet_m` teacher at 28x28 on 20,000 Fashion-MNIST training images
(3 epochs), then distills a `mobilenetv3_small` student at 32, 48 and 64 pixels (3 epochs each,
the Distiller upsamples the 28x28 batches to each student's size), evaluates on the 10,000 test
images, prints a table and writes `results.json`, `teacher.keras` and
`student_<size>.keras` into --output_dir.

Runtime on a 2-core CPU with defaults: about 5.5 minutes (measured 5 min 35 s).

Numbers it gave (seed 0, 2026-11): teacher test accuracy 0.901; students

    resolution     params  test_acc  agreement  epoch_s
            32  1,540,218    0.8615     0.9028     13.8
            48  1,540,218    0.8757     0.9195     21.7
            64  1,540,218    0.8854     0.9320     34.9
"""

import os
import statistics
import time

import keras
from absl import app, flags

import tfkd
from tfkd.recipes import common

flags.DEFINE_string("student", "mobilenetv3_small", "Student model (tfkd.list_models()).")
flags.DEFINE_list("resolutions", ["32", "48", "64"], "Student input sides to sweep.")
common.define_common_flags()
FLAGS = flags.FLAGS


def distill_at(cfg, teacher, train, test, size, num_classes, steps_per_epoch, calibration):
    """Distills one student at `size`; returns its row of the results table."""
    keras.utils.set_random_seed(cfg.seed)
    student = tfkd.create_model(cfg.student, image_size=size, num_classes=num_classes)
    distiller = tfkd.Distiller(teacher=teacher, student=student, temperature=cfg.temperature,
                               student_loss_weight=cfg.student_loss_weight)
    distiller.compile(optimizer=common.optimizer(cfg, cfg.epochs * steps_per_epoch),
                      metrics=["accuracy"])
    timer = common.EpochTimer()
    distiller.fit(train, epochs=cfg.epochs, verbose=cfg.verbose, callbacks=[timer],
                  shuffle=False)  # tfkd.data shuffles the train split itself
    result = distiller.evaluate(test, verbose=0, return_dict=True)
    student.save(os.path.join(cfg.output_dir, f"student_{size}.keras"))
    row = {
        "resolution": size,
        "student": cfg.student,
        "params": int(student.count_params()),
        "test_accuracy": float(result["accuracy"]),
        "teacher_agreement": float(result["teacher_agreement"]),
        # The first epoch also traces the graph; the median is the steady-state cost.
        "epoch_seconds": statistics.median(timer.seconds),
        "first_epoch_seconds": timer.seconds[0],
    }
    if cfg.quantization != "none":
        path = os.path.join(cfg.output_dir, f"student_{size}_{cfg.quantization}.tflite")
        row.update(common.export_student(cfg, student, path, calibration, test))
    return row


def format_table(rows):
    """The results as an aligned text table."""
    header = f"{'resolution':>10} {'params':>10} {'test_acc':>9} {'agreement':>10} {'epoch_s':>8}"
    exported = "quantization" in rows[0]
    if exported:
        q = rows[0]["quantization"]
        header += f" {'tflite_kB':>9} {q + '_acc':>9} {'drop_pts':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        line = (f"{r['resolution']:>10} {r['params']:>10,} {r['test_accuracy']:>9.4f} "
                f"{r['teacher_agreement']:>10.4f} {r['epoch_seconds']:>8.1f}")
        if exported:
            flag = "" if r["quantization_passed"] else "  (over --max_quantization_drop)"
            line += (f" {r['tflite_bytes'] / 1e3:>9.1f} {r['tflite_accuracy']:>9.4f} "
                     f"{r['quantization_drop_points']:>8.2f}{flag}")
        lines.append(line)
    return "\n".join(lines)


def main(argv):
    del argv
    cfg = FLAGS
    common.quiet_tensorflow_logging()
    start = time.perf_counter()
    # Check every size before the teacher trains: a typo must not cost minutes.
    resolutions = common.parse_sizes(cfg.resolutions, cfg.student, "--resolutions")
    os.makedirs(cfg.output_dir, exist_ok=True)
    num_classes = tfkd.data.dataset_info(cfg.dataset)["num_classes"]
    train, test = common.load_splits(cfg)
    calibration = common.calibration_split(cfg)
    # Counted once: an unknown cardinality costs a full pass over the data.
    steps_per_epoch = common.num_batches(train)
    print(f"Training teacher {cfg.teacher} at {cfg.teacher_size}px ...", flush=True)
    teacher, teacher_accuracy = common.train_teacher(cfg, train, test, num_classes,
                                                     steps_per_epoch)
    teacher.save(os.path.join(cfg.output_dir, "teacher.keras"))
    print(f"teacher test accuracy {teacher_accuracy:.4f}", flush=True)
    rows = []
    for i, size in enumerate(resolutions, 1):
        rows.append(distill_at(cfg, teacher, train, test, size, num_classes, steps_per_epoch,
                               calibration))
        elapsed = time.perf_counter() - start
        print(f"run {i}/{len(resolutions)}: {cfg.student}@{size} test accuracy "
              f"{rows[-1]['test_accuracy']:.4f} (elapsed {elapsed:.0f}s)", flush=True)
    print(f"\nteacher {cfg.teacher}@{cfg.teacher_size}: test accuracy {teacher_accuracy:.4f}")
    print(format_table(rows))
    total = time.perf_counter() - start
    print(f"total {total:.0f}s; results in {cfg.output_dir}")
    common.write_json(os.path.join(cfg.output_dir, "results.json"), {
        "teacher": cfg.teacher, "teacher_size": cfg.teacher_size,
        "teacher_accuracy": teacher_accuracy, "rows": rows, "total_seconds": total,
        "flags": cfg.flag_values_dict()})


if __name__ == "__main__":
    app.run(main)
