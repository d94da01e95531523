"""Training one run of a study, resumably, and recording everything the report reads.

A run is one student, at one resolution, in one mode, with one seed:
    "kd"        distilled from the teacher;
    "scratch"   trained on the labels alone (the baseline KD must beat);
    "kd-stage"  distilled, as the first stage of a "kd+ft" run;
    "kd+ft"     a "kd-stage" student fine-tuned on the labels (finetune_after_kd).
"""

import dataclasses
import os
import shutil
import time
from typing import Optional

import keras

import tfkd
from tfkd import report
from tfkd.distiller import build_optimizer
from tfkd.recipes import common, distributed, measure, study as study_lib


# Modes trained by a Distiller; every other mode trains on the labels alone. (Not the report's
# DISTILLED_MODES, which are the final distilled students compared with scratch.)
DISTILLER_MODES = ("kd", "kd-stage")
# Modes whose students are the study's answer: exported, checked and timed. Baselines and
# intermediate stages are not (an export and a 10,000-image check cost ~20 s on a CPU).
SHIPPED_MODES = ("kd", "kd+ft")


@dataclasses.dataclass
class RunSpec:
    """What one run trains. `init_from` starts from a saved student instead of random weights."""

    student: str
    resolution: int
    mode: str
    seed: int
    epochs: int
    budget_s: Optional[float] = None
    init_from: Optional[str] = None
    learning_rate: Optional[float] = None
    tag: str = ""

    @property
    def run_id(self):
        tag = f"-{self.tag}" if self.tag else ""
        return f"{self.student}-r{self.resolution}-{self.mode}{tag}-s{self.seed}"


class EpochSeconds(keras.callbacks.Callback):
    """Puts each epoch's wall time into the logs, so history.csv keeps it across resumes."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `budget_s` seconds of training have passed (checked every batch)."""

    def __init__(self, budget_s, spent_s=0.0):
        super().__init__()
        self.budget_s, self.spent_s = budget_s, spent_s

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.spent_s + time.perf_counter() - self._start >= self.budget_s:
            self.model.stop_training = True


def run_study(study, cfg, seeds, runs, format_table, teacher_names=None):
    """Trains the teacher(s) and every run, prints the table, builds the report; returns rows.

    Each run gets its datasets afresh, so its data order follows from its seed alone and not
    from the runs before it: a resumed sweep trains exactly what an uninterrupted one would.
    With `teacher_names`, a distilled run's tag names its teacher; else it is --teacher.
    With --num_shards > 1 it trains only this shard's runs (`shard_runs`) and their teachers;
    the table, the report and the rows returned cover every complete run in the study folder.
    """
    def data_for(seed):
        return common.load_data(cfg, seed)

    names = teacher_names or [cfg.teacher]

    def teacher_name(spec):
        return spec.tag if teacher_names else names[0]

    all_runs, runs = runs, shard_runs(runs, cfg.shard_index, cfg.num_shards)
    if cfg.num_shards > 1:
        print(f"shard {cfg.shard_index} of {cfg.num_shards}: {len(runs)} of {len(all_runs)} "
              "runs", flush=True)
    # A shard trains only the teachers its own runs distil from.
    names = [n for n in names if any(teacher_name(s) == n for s in runs if _uses_teacher(s))]
    first = data_for(seeds[0]) if names else None  # the teachers need its test split
    teachers = {name: common.get_teacher(study, cfg, first, name=name, seed=seeds[0])
                for name in names}
    rows = run_all(study, runs, cfg, data_for, lambda spec: teachers[teacher_name(spec)])
    for t in teachers.values():
        print(f"teacher {t.name}@{t.size} ({t.kind}): test accuracy {t.accuracy:.4f}")
    # The table and report cover every complete run in the folder, other shards' included.
    rows = [r for r in (study.completed(s.run_id) for s in all_runs) if r]
    if not rows:
        print("nothing to report: no run of this study is complete here", flush=True)
        return rows
    print(format_table(rows))
    print(f"report: {report.build(study.dir)['report_md']}")
    return rows


def shard_runs(runs, shard_index, num_shards):
    """The runs of shard `shard_index` (of `num_shards`): round-robin in plan order.

    The plan follows from the flags alone, so every machine computes the same shards: disjoint,
    and together every run. A run that starts from another run's saved student (`init_from`,
    as finetune_after_kd's kd+ft) goes with that run, so it finds the file.
    """
    group_of, groups = {}, 0
    for spec in runs:
        parent = os.path.basename(os.path.dirname(spec.init_from or ""))
        if parent in group_of:
            group_of[spec.run_id] = group_of[parent]
        else:
            group_of[spec.run_id], groups = groups, groups + 1
    return [spec for spec in runs if group_of[spec.run_id] % num_shards == shard_index]


def _uses_teacher(spec):
    """Distilled runs, and kd+ft (which records the teacher its kd-stage learnt from)."""
    return spec.mode.startswith("kd")


def run_all(study, runs, cfg, data_for, teacher_for):
    """Runs every `RunSpec` not yet complete, printing progress; returns all their metrics.

    Args:
        data_for: seed -> `common.Data`.
        teacher_for: spec -> `common.Teacher` (called for "kd" runs only).
    """
    progress = study_lib.Progress(len(runs))
    rows = []
    for spec in runs:
        done = study.completed(spec.run_id)
        if done:
            progress.finished(spec.run_id, None)
        else:
            start = time.perf_counter()
            teacher = teacher_for(spec) if _uses_teacher(spec) else None
            done = train_run(study, spec, cfg, data_for(spec.seed), teacher)
            progress.finished(spec.run_id, f"test accuracy {done['test_accuracy']:.4f}",
                              time.perf_counter() - start)
        rows.append(done)
    return rows


def train_run(study, spec, cfg, data, teacher=None):
    """Trains, exports, benchmarks and records one run; returns its metrics.

    Args:
        study: the `Study` the run belongs to.
        spec: the `RunSpec`.
        cfg: the recipe's flag values.
        data: a `common.Data` (train, test, calibration, steps per epoch, classes).
        teacher: a `common.Teacher` for "kd" runs.
    """
    run_dir = study.run_dir(spec.run_id)
    keras.utils.set_random_seed(spec.seed)
    # Student, Distiller and optimizer get their variables on every replica of --strategy.
    with distributed.strategy(cfg).scope():
        student = _student(spec, data.num_classes)
        model, train, test = _trainable(spec, cfg, student, teacher, data)
    history_path = os.path.join(run_dir, "history.csv")
    spent = sum(study_lib.read_history(history_path).get("epoch_seconds", []) or [0.0])
    # History before backup: a kill between the two re-trains that epoch and rewrites its row,
    # whereas the other order could lose the row of an epoch the backup already holds.
    callbacks = [
        EpochSeconds(), study_lib.HistoryCSV(history_path),
        study_lib.AtomicBackupAndRestore(os.path.join(run_dir, "backup"), delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False,
                                    profile_batch=0)]
    if spec.budget_s:
        callbacks.append(TimeBudget(spec.budget_s, spent))
    # Training takes minutes: a sample every 50 ms finds the peak without costing the step.
    with measure.RssSampler(interval_s=0.05) as rss:
        model.fit(train, validation_data=test, epochs=spec.epochs, callbacks=callbacks,
                  verbose=cfg.verbose, shuffle=False)  # tfkd.data shuffles the train split
    metrics = _describe(spec, student, teacher, study_lib.read_history(history_path), rss)
    study_lib.save_model(student, os.path.join(run_dir, "student.keras"))
    if spec.mode in SHIPPED_MODES:
        metrics.update(_export_and_bench(cfg, student, run_dir, data))
    else:
        metrics.update({"tflite": {}, "bench": []})
    metrics = study.finish(spec.run_id, metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    return metrics


def _student(spec, num_classes):
    if spec.init_from:
        return keras.saving.load_model(spec.init_from, safe_mode=True)
    return tfkd.create_model(spec.student, image_size=spec.resolution, num_classes=num_classes)


def _trainable(spec, cfg, student, teacher, data):
    """(model to fit, train data, validation data) for the run's mode."""
    steps = spec.epochs * data.steps_per_epoch
    optimizer = common.optimizer(cfg, steps, spec.learning_rate)
    if spec.mode in DISTILLER_MODES:
        model = tfkd.Distiller(teacher=teacher.model, student=student,
                               temperature=cfg.temperature,
                               student_loss_weight=cfg.student_loss_weight)
        model.compile(optimizer=optimizer, metrics=["accuracy"])
        return (model, *common.distillation_data(cfg, teacher, data, spec.seed))
    # Labels only: the student sees the batches resized exactly as the Distiller resizes them.
    student.compile(optimizer=optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    build_optimizer(student)  # as the Distiller does: a faster first step
    size = spec.resolution
    return student, common.resized(data.train, size), common.resized(data.test, size)


def _describe(spec, student, teacher, history, rss):
    """The metrics of a trained run: accuracies per epoch, cost, the model."""
    val = history.get("val_accuracy") or [None]
    best = max(range(len(val)), key=lambda i: val[i] if val[i] is not None else -1)
    module = tfkd.models._family_of(spec.student)  # family and kind, without building
    agreement = history.get("val_teacher_agreement")
    seconds = history.get("epoch_seconds") or []
    return {
        **dataclasses.asdict(spec), "family": module.FAMILY, "kind": module.KIND,
        "params": int(student.count_params()), "macs": int(measure.macs_per_image(student)),
        "teacher": teacher.name if teacher else None,
        "teacher_family": teacher.family if teacher else None,
        "teacher_kind": teacher.kind if teacher else None,
        "teacher_resolution": teacher.size if teacher else None,
        "teacher_accuracy": teacher.accuracy if teacher else None,
        "teacher_cache": spec.mode in DISTILLER_MODES and bool(teacher.caches),
        "epochs_run": len(val) if val[0] is not None else 0,
        "test_accuracy": val[-1], "last_accuracy": val[-1],
        "best_accuracy": val[best], "best_epoch": best + 1,
        "teacher_agreement": agreement[-1] if agreement else None,
        "train_seconds": sum(s for s in seconds if s), "epoch_seconds": _median(seconds),
        # The process's peak RSS accumulates over the runs of one process (run order matters);
        # the growth during this run alone is kept beside it.
        "peak_rss_mb": rss.peak_mb, "rss_growth_mb": rss.overall_mb,
    }


def _median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def _export_and_bench(cfg, student, run_dir, data):
    """The run's TFLite export (checked) and its latency on every --targets target."""
    if cfg.quantization == "none":
        return {"tflite": {}, "bench": []}
    path = os.path.join(run_dir, f"student_{cfg.quantization}.tflite")
    row = common.export_student(cfg, student, path, data.calibration, data.test)
    tflite = {cfg.quantization: {"path": path, "bytes": row["tflite_bytes"],
                                 "accuracy": row["tflite_accuracy"],
                                 "drop_points": row["quantization_drop_points"],
                                 "passed": row["quantization_passed"],
                                 "float_ops": row["tflite_float_ops"]}}
    threads = tuple(int(t) for t in cfg.bench_threads)
    bench = [r.to_dict() for target in cfg.targets
             for r in tfkd.bench.run(path, target, threads=threads)]
    return {"tflite": tflite, "bench": bench}
