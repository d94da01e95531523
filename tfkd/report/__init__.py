"""Study reports: rebuild a study folder's table, Markdown summary and plots from its files alone.

    paths = tfkd.report.build("runs/resolution_sweep/default")
    # or: python -m tfkd.report runs/resolution_sweep/default

A study folder holds `config.json` and `runs/<run_id>/` folders, each with `metrics.json`
(written last, so its absence means the run did not finish) and the Keras `history.csv`.
`build` writes, atomically and into the study folder:

    results.csv   one row per complete run, sorted by run_id
    report.md     configuration, per-configuration tables over seeds, KD gain, the paper's
                  findings with 95% intervals and verdicts (`evidence`), skipped runs
    plots/        accuracy_vs_latency.png, accuracy_memory_vs_resolution.png,
                  accuracy_vs_params.png, training_curves.png

The folders of one study's shards (`--shard_index`, run on several machines and copied
together) merge into one report: `build("machineA/runs/x/default", "machineB/runs/x/default")`
writes it into the first folder (or `output_dir=`), after checking that they hold one study.

The folder's layout, and the reading of its files, live in `tfkd.recipes.folder` (the one
module that both writes and reads a study folder). This package itself needs only matplotlib,
the standard library and `tfkd.tflite_file` (to read an old run's peak activation memory from
its .tflite); importing `tfkd` (the parent package) still loads TensorFlow.
"""

import dataclasses
import os
import tempfile

from tfkd import tflite_file
from tfkd.recipes.folder import (RUNS, StudyError, read_config, read_history, read_runs,
                                 run_history_path)
from tfkd.report import evidence, merge, plots, tables
from tfkd.report.plots import pareto_front

__all__ = ["Study", "StudyError", "build", "load_study", "pareto_front", "read_config",
           "read_history"]


@dataclasses.dataclass
class Study:
    """Everything a report is built from, read from one study folder (or several merged).

    Attributes:
        path: the study folder (the first one, when merged).
        config: the parsed `config.json` (the first folder's).
        runs: the `metrics.json` dicts of complete runs, sorted by run_id.
        skipped: (run folder relative to the study, reason) for each run left out; when
            merged, the folder is given in full.
        histories: run_id -> history rows (dicts of floats, epoch 0-based as Keras writes it),
            or None where history.csv is missing or unreadable.
        truncated: run_ids whose history.csv ended in a partial line (dropped).
        sources: (folder, complete runs taken from it) for each folder read.
    """

    path: str
    config: dict
    runs: list
    skipped: list
    histories: dict
    truncated: list
    sources: list = dataclasses.field(default_factory=list)


def load_study(study_dir, *more_dirs):
    """Reads a study folder, or merges the folders of one study's shards.

    Args:
        study_dir: a `runs/<recipe>/<name>` folder.
        *more_dirs: more folders of the same study (the same recipe and flags), e.g. shards
            that ran on other machines (--shard_index) and were copied here. Their complete
            runs join the first folder's; a run complete in several folders is read from the
            first of them.

    Returns:
        A `Study`.

    Raises:
        StudyError: a folder has no readable config.json, the folders hold different studies,
            or no folder has a complete run.
    """
    dirs = [str(d) for d in (study_dir, *more_dirs)]
    configs = [read_config(d) for d in dirs]
    problem = merge.difference(dirs, configs)
    if problem:
        raise StudyError(problem)
    runs, skipped, sources = [], [], []
    for folder in dirs:
        found, left_out = read_runs(folder)
        new, repeated = merge.split_repeats(found, runs)
        if more_dirs:
            left_out = [(os.path.join(folder, name), why) for name, why in left_out + repeated]
        runs += new
        skipped += left_out
        sources.append((folder, len(new)))
    runs.sort(key=lambda r: r["run_id"])
    if not runs:
        found = f"{len(skipped)} incomplete" if skipped else "no run folders"
        raise StudyError(f"{' and '.join(dirs)}: no complete runs ({found} under runs/); a run "
                         "is complete once its metrics.json says \"complete\": true. Wait for "
                         "the recipe to finish or rerun it.")
    for run in runs:
        run["activation_kb"] = activation_kb(run)
    histories, truncated = {}, []
    for run in runs:
        rows, cut = read_history(run_history_path(run))
        histories[run["run_id"]] = rows
        if cut:
            truncated.append(run["run_id"])
    return Study(dirs[0], configs[0], runs, skipped, histories, truncated, sources)


def build(study_dir, *more_dirs, output_dir=None):
    """Rebuilds results.csv, report.md and the plots of a study folder from its files.

    Args:
        study_dir: a `runs/<recipe>/<name>` folder.
        *more_dirs: more folders of the same study (shards), merged as `load_study` does.
        output_dir: where the report goes; default `study_dir`.

    Returns:
        A dict name -> path written: "results_csv", "report_md" and one entry per plot
        (the file name without .png).

    Raises:
        StudyError: a folder has no config.json, the folders hold different studies, or no
            complete run.
    """
    study = load_study(study_dir, *more_dirs)
    out = str(output_dir or study.path)
    written = {}
    plot_dir = os.path.join(out, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    notes = {}
    wanted = dict(plots.PLOTS)
    wanted.update({name: draw for name, (draw, shows) in plots.OPTIONAL_PLOTS.items()
                   if shows(study)})
    for name, draw in wanted.items():
        written[name] = os.path.join(plot_dir, name + ".png")
        notes[name] = _write_atomic(written[name], lambda f, draw=draw: draw(study, f),
                                    binary=True)
    written["results_csv"] = os.path.join(out, "results.csv")
    _write_atomic(written["results_csv"], lambda f: tables.write_results_csv(study, f))
    written["report_md"] = os.path.join(out, "report.md")
    findings = evidence.section(study.config.get("recipe"), study.runs)
    _write_atomic(written["report_md"],
                  lambda f: f.write(tables.report_markdown(study, notes, findings)))
    return written


def activation_kb(run):
    """The peak activation memory (KB) of a run's exported student, or None without an export.

    From the run's metrics, or read from the .tflite file in its folder for runs exported before
    the metrics recorded it (the file's recorded path may point where the study was made).
    """
    tflite = run.get("tflite") if isinstance(run.get("tflite"), dict) else {}
    for _, record in sorted(tflite.items()):
        if not isinstance(record, dict):
            continue
        recorded = record.get("activation_kb")
        if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
            return float(recorded)
        path = os.path.join(run["_study"], RUNS, run["_folder"],
                            os.path.basename(str(record.get("path") or "")))
        if os.path.isfile(path):
            try:
                return tflite_file.read_info(path).peak_activation_bytes / 1024
            except Exception:  # noqa: BLE001 - a damaged file leaves the number out, no more
                continue
    return None


def _write_atomic(path, write, binary=False):
    """Calls write(file) on a temporary file next to `path`, renames it over `path` and returns
    what write returned.

    A reader (or a crash) never sees a half-written report: the rename is atomic on POSIX and
    Windows as long as the temporary file is on the same filesystem, hence the same folder.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(fd, mode, **({} if binary else {"newline": "", "encoding": "utf-8"})) as f:
            result = write(f)
        # mkstemp makes the file private (0600); a report is meant to be read by others.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return result
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
