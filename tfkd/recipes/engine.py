"""The study engine: a config and a plan of runs in, a study folder and its results rows out.

A run is one student, at one resolution, in one mode (`tfkd.recipes.modes`), with one seed.
`run_study` opens the study folder (refusing one made with other settings), trains the teachers
the plan needs, then every run not yet complete, and builds the report. Each run is resumable:
a killed run restarts from its last finished epoch, a finished one is skipped.
"""

import dataclasses
import os
import re
import shutil
import time
from typing import Optional

import keras

import tfkd
from tfkd import report
from tfkd.checks import label_errors
from tfkd.distiller import build_optimizer
from tfkd.recipes import distributed, folder, inputs, measure, modes, ship, teacher as teachers
from tfkd.recipes import training
from tfkd.recipes.config import PRESENTATION, ConfigError


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

    def __post_init__(self):
        modes.get(self.mode)  # an unknown mode fails when planned, not after training

    @property
    def run_id(self):
        tag = f"-{path_safe(self.tag)}" if self.tag else ""
        return f"{path_safe(self.student)}-r{self.resolution}-{self.mode}{tag}-s{self.seed}"


def run_recipe(recipe, config, plan, format_table, teacher_names=None):
    """What every recipe's `run(config)` does: check the config, plan the runs, run the study.

    Args:
        recipe: the recipe's name.
        config: its `Config`.
        plan: config -> the list of `RunSpec`.
        format_table: rows -> the text table printed at the end.
        teacher_names: the teachers of a study with several (their names tag the runs).

    Returns:
        The rows of the study's results: one metrics dict per complete run.

    Raises:
        ConfigError: a setting the study cannot run with, before any training.
    """
    config.check()
    return run_study(recipe, config, with_feature_twins(plan(config), config), format_table,
                     teacher_names)


def with_feature_twins(runs, config):
    """The plan with a kd+feat run after each kd run when the study has `--features`: the two
    differ only in the feature terms, so the report compares logit-only and feature KD."""
    if tfkd.features.parse(config.features) is None:
        return runs
    planned = []
    for spec in runs:
        planned.append(spec)
        if spec.mode == modes.KD:
            planned.append(dataclasses.replace(spec, mode=modes.KD_FEAT))
    return planned


def run_study(recipe, config, runs, format_table, teacher_names=None):
    """Trains the teacher(s) and every run, prints the table, builds the report; returns rows.

    Each run gets its datasets afresh, so its data order follows from its seed alone and not
    from the runs before it: a resumed sweep trains exactly what an uninterrupted one would.
    With `teacher_names`, a distilled run's tag names its teacher; else it is config.teacher.
    With num_shards > 1 it trains only this shard's runs (`distributed.shard_runs`) and their
    teachers; the table, the report and the rows returned cover every complete run in the
    study folder.

    Args:
        recipe: the recipe's name (the study folder is OUTPUT_DIR/<recipe>/<name>).
        config: a checked `StudyConfig`.
        runs: the plan, a list of `RunSpec`.
        format_table: rows -> the text table printed at the end.
        teacher_names: the teachers of a study with several.

    Raises:
        ConfigError: the folder holds a study made with other settings, or the strategy
            cannot run this config.
    """
    distributed.start_strategy(config)
    study = open_study(recipe, config)
    names = teacher_names or [config.teacher]

    def teacher_name(spec):
        return spec.tag if teacher_names else names[0]

    mine = distributed.shard_runs(runs, config.shard_index, config.num_shards)
    if config.num_shards > 1:
        print(f"shard {config.shard_index} of {config.num_shards}: {len(mine)} of {len(runs)} "
              "runs", flush=True)
    # A shard trains only the teachers its own runs learn from.
    names = [n for n in names if any(teacher_name(s) == n for s in mine
                                     if modes.get(s.mode).teacher)]
    first = inputs.load_data(config, config.seeds[0]) if names else None  # for the test split
    found = {n: teachers.get_teacher(study, config, first, name=n, seed=config.seeds[0])
             for n in names}
    run_all(study, mine, config, lambda spec: found[teacher_name(spec)])
    for t in found.values():
        print(f"teacher {t.name}@{t.size} ({t.kind}): test accuracy {t.accuracy:.4f}")
    # The table and report cover every complete run in the folder, other shards' included.
    rows = [r for r in (study.completed(s.run_id) for s in runs) if r]
    if not rows:
        print("nothing to report: no run of this study is complete here", flush=True)
        return rows
    print(format_table(rows))
    print(f"report: {report.build(study.dir)['report_md']}")
    return rows


def open_study(recipe, config):
    """The study folder of `config`, its config.json written; ConfigError when the folder holds
    a study made with other settings (presentation settings such as verbose may differ)."""
    study = folder.StudyFolder(folder.study_dir(distributed.output_root(config), recipe,
                                                config.name))
    flags = {k: v for k, v in config.to_flags().items() if k not in PRESENTATION}
    previous = study.read_config()
    if previous is not None:
        changed = folder.changed_settings(previous, flags, type(config)().to_flags(),
                                          ignored=PRESENTATION)
        if changed:
            raise ConfigError(lambda n: (
                f"{study.dir} holds a study made with other values of "
                f"{', '.join(n(k) for k in changed)}; pass {n('name')}=NEW for a new study, or "
                "the same values to resume this one"))
    study.write_config(recipe, config.name, flags, config.seeds)
    return study


def run_all(study, runs, config, teacher_for):
    """Runs every `RunSpec` not yet complete, printing progress; returns all their metrics.

    Args:
        teacher_for: spec -> `teachers.Teacher` (called for runs whose mode has a teacher).
    """
    progress = Progress(len(runs))
    rows = []
    for spec in runs:
        done = study.completed(spec.run_id)
        if done:
            progress.finished(spec.run_id, None)
        else:
            start = time.perf_counter()
            teacher = teacher_for(spec) if modes.get(spec.mode).teacher else None
            done = train_run(study, spec, config, inputs.load_data(config, spec.seed), teacher)
            progress.finished(spec.run_id, f"test accuracy {done['test_accuracy']:.4f}",
                              time.perf_counter() - start)
        rows.append(done)
    return rows


def train_run(study, spec, config, data, teacher=None):
    """Trains, exports, benchmarks and records one run; returns its metrics.

    Args:
        study: the `folder.StudyFolder` the run belongs to.
        spec: the `RunSpec`.
        config: the study's `StudyConfig`.
        data: an `inputs.Data` (train, test, calibration, steps per epoch, classes).
        teacher: a `teachers.Teacher` for runs whose mode has one.
    """
    run_dir = study.run_dir(spec.run_id)
    keras.utils.set_random_seed(spec.seed)
    # Student, Distiller and optimizer get their variables on every replica of the strategy.
    with distributed.strategy(config.strategy).scope():
        student = _student(spec, config, data.num_classes)
        if modes.get(spec.mode).quantization_aware:  # fake quantization around its layers
            student = tfkd.qat.quantize_model(student, data.calibration)
        model, train, test = _trainable(spec, config, student, teacher, data)
    history_path = os.path.join(run_dir, folder.HISTORY)
    spent = sum(folder.history_columns(history_path).get("epoch_seconds", []) or [0.0])
    # History before backup: a kill between the two re-trains that epoch and rewrites its row,
    # whereas the other order could lose the row of an epoch the backup already holds.
    callbacks = [
        training.EpochSeconds(), training.HistoryCSV(history_path),
        training.AtomicBackupAndRestore(os.path.join(run_dir, "backup"),
                                        delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False,
                                    profile_batch=0)]
    if spec.budget_s:
        callbacks.append(training.TimeBudget(spec.budget_s, spent))
    # Training takes minutes: a sample every 50 ms finds the peak without costing the step.
    # A label outside the classes is a ValueError naming it, at its batch (tfkd.checks).
    with measure.RssSampler(interval_s=0.05) as rss, label_errors(data.num_classes):
        model.fit(train, validation_data=test, epochs=spec.epochs, callbacks=callbacks,
                  verbose=config.verbose, shuffle=False)  # tfkd.data shuffles the train split
    metrics = _describe(spec, student, teacher, folder.history_columns(history_path), rss)
    # Not after quantization-aware training: the forward passes would move its learned ranges.
    if config.recalibrate_bn_batches and not modes.get(spec.mode).quantization_aware:
        metrics.update(_recalibrated(model, student, test, spec, config, data, metrics))
    folder.save_model(student, os.path.join(run_dir, folder.STUDENT))
    shipped = modes.get(spec.mode).shipped
    metrics.update(ship.export_and_bench(config, student, run_dir, data) if shipped
                   else ship.nothing())
    metrics = study.finish(spec.run_id, metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    return metrics


def _recalibrated(model, student, test, spec, config, data, metrics):
    """The run's accuracy once its BatchNorm statistics are recomputed for its final weights
    (--recalibrate_bn_batches), evaluated as fit validated each epoch (`model` on `test`); the
    accuracy before is kept beside it."""
    tfkd.models.recalibrate_batch_norm(student, inputs.resized(data.train, spec.resolution),
                                       config.recalibrate_bn_batches)
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    found = {"accuracy_before_bn_recalibration": metrics["test_accuracy"],
             "test_accuracy": accuracy, "last_accuracy": accuracy}
    if metrics["best_accuracy"] is None or accuracy >= metrics["best_accuracy"]:
        found.update(best_accuracy=accuracy, best_epoch=metrics["epochs_run"])
    return found


def _student(spec, config, num_classes):
    if spec.init_from:
        return tfkd.models.load_model(spec.init_from)
    return tfkd.create_model(spec.student, image_size=spec.resolution, num_classes=num_classes,
                             weights=config.student_weights or None)


def _trainable(spec, config, student, teacher, data):
    """(model to fit, train data, validation data) for the run's mode."""
    steps = spec.epochs * data.steps_per_epoch
    optimizer = training.adam(spec.learning_rate or config.learning_rate, steps)
    if modes.get(spec.mode).distills:
        terms = (tfkd.features.resolve(tfkd.features.parse(config.features), teacher.model,
                                       student) if modes.get(spec.mode).features else None)
        model = tfkd.Distiller(teacher=teacher.model, student=student,
                               temperature=config.temperature,
                               student_loss_weight=config.student_loss_weight,
                               distillation_loss=config.distillation_loss, features=terms)
        model.compile(optimizer=optimizer, metrics=["accuracy"])
        return (model, *inputs.distillation_data(config, teacher, data, spec.seed))
    # Labels only: the student sees the batches resized exactly as the Distiller resizes them.
    student.compile(optimizer=optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    build_optimizer(student)  # as the Distiller does: a faster first step
    size = spec.resolution
    train, test = (inputs.resized(d, size, data.num_classes) for d in (data.train, data.test))
    return student, train, test


def _describe(spec, student, teacher, history, rss):
    """The metrics of a trained run: accuracies per epoch, cost, the model."""
    val = history.get("val_accuracy") or [None]
    best = max(range(len(val)), key=lambda i: val[i] if val[i] is not None else -1)
    family, kind = tfkd.models.family_and_kind(spec.student)  # without building
    agreement = history.get("val_teacher_agreement")
    seconds = history.get("epoch_seconds") or []
    return {
        **dataclasses.asdict(spec), "family": family, "kind": kind,
        "params": int(student.count_params()), "macs": int(measure.macs_per_image(student)),
        "teacher": teacher.name if teacher else None,
        "teacher_family": teacher.family if teacher else None,
        "teacher_kind": teacher.kind if teacher else None,
        "teacher_resolution": teacher.size if teacher else None,
        "teacher_accuracy": teacher.accuracy if teacher else None,
        "teacher_cache": modes.get(spec.mode).distills and bool(teacher.caches),
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


def path_safe(name):
    """A model name as part of a folder name: "hub:/data/vit" -> "hub_data_vit" (zoo names
    are unchanged)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


class Progress:
    """Prints a line per finished run: `run 3/12 ID: ... (elapsed 2m10s, ETA 5m)`.

    The ETA extrapolates from runs trained in this process; skipped runs cost nothing.
    """

    def __init__(self, total):
        self.total, self.done, self.trained = total, 0, []
        self.start = time.perf_counter()

    def finished(self, run_id, summary, seconds=None):
        self.done += 1
        if seconds is not None:
            self.trained.append(seconds)
        elapsed = time.perf_counter() - self.start
        left = self.total - self.done
        eta = left * sum(self.trained) / len(self.trained) if self.trained else None
        note = "skipped, already complete" if seconds is None else summary
        print(f"run {self.done}/{self.total} {run_id}: {note} (elapsed {_clock(elapsed)}, "
              f"ETA {_clock(eta) if eta is not None and left else '0s' if not left else '?'})",
              flush=True)


def _clock(seconds):
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
