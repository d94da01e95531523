"""The study folder: its layout, written by the engine and read by the report.

    OUTPUT_DIR/<recipe>/<name>/
        config.json              settings (as flags), package versions, git commit, seeds
        teachers/<hash>/         teacher.keras, teacher.json, logits-<split>.npz: once per
                                 teacher config
        runs/<run_id>/           history.csv, student.keras, *.tflite, tensorboard/, and
                                 metrics.json, written last: a run is complete when it says so
        results.csv, report.md, plots/   the report (tfkd.report), rebuilt from the files above

Every file is written atomically (a temporary name, then a rename), so a kill at any moment
leaves either the old file or the new one. This module uses the standard library only.
"""

import csv
import datetime
import hashlib
import importlib.metadata
import json
import os
import subprocess
import uuid

CONFIG, RUNS, TEACHERS = "config.json", "runs", "teachers"
METRICS, HISTORY, STUDENT = "metrics.json", "history.csv", "student.keras"
TEACHER_MODEL, TEACHER_INFO = "teacher.keras", "teacher.json"
_PACKAGES = ("tfkd", "tensorflow", "keras", "ai-edge-litert", "numpy")


class StudyError(ValueError):
    """A folder that is not a study folder, or a study with nothing to report."""


def study_dir(output_dir, recipe, name):
    """The folder of study `name` of `recipe` under `output_dir`."""
    return os.path.join(output_dir, recipe, name)


class StudyFolder:
    """The files of one study, for the engine that writes them."""

    def __init__(self, path):
        self.dir = path

    def run_dir(self, run_id):
        """The run's folder, created if needed."""
        path = os.path.join(self.dir, RUNS, run_id)
        os.makedirs(path, exist_ok=True)
        return path

    def run_file(self, run_id, name):
        """The path of file `name` of a run (its folder created if needed)."""
        return os.path.join(self.run_dir(run_id), name)

    def completed(self, run_id):
        """The metrics of a finished run, or None if it has to (re)run."""
        metrics = read_json(os.path.join(self.dir, RUNS, run_id, METRICS))
        return metrics if metrics and metrics.get("complete") else None

    def finish(self, run_id, metrics):
        """Marks a run done: its metrics.json is the last file written."""
        metrics = {**metrics, "run_id": run_id, "complete": True}
        write_json(self.run_file(run_id, METRICS), metrics)
        return metrics

    def teacher_dir(self, teacher_config):
        """The folder of the teacher with this config (a hash of it names the folder)."""
        key = hashlib.sha256(json.dumps(teacher_config, sort_keys=True).encode()).hexdigest()
        path = os.path.join(self.dir, TEACHERS, key[:12])
        os.makedirs(path, exist_ok=True)
        return path

    def read_config(self):
        """The config.json written before, or None."""
        return read_json(os.path.join(self.dir, CONFIG))

    def write_config(self, recipe, name, flags, seeds):
        """Writes config.json, keeping the creation time of an earlier one."""
        previous = self.read_config() or {}
        write_json(os.path.join(self.dir, CONFIG), {
            "recipe": recipe, "name": name, "flags": flags, "seeds": list(seeds),
            "versions": _versions(), "git_commit": _git_commit(),
            "created": previous.get("created") or _now()})


def changed_settings(previous, flags, defaults, ignored=()):
    """Names of the settings whose value in `flags` differs from config.json's `previous`.

    A setting that `previous` lacks counts as unchanged when `flags` gives it its default: a
    study made before the setting existed resumes as long as the setting is left alone.
    """
    old = {k: v for k, v in (previous.get("flags") or {}).items() if k not in ignored}
    new = {k: v for k, v in flags.items() if k not in ignored}
    return sorted(k for k in set(old) | set(new)
                  if old.get(k, defaults.get(k)) != new.get(k))


def write_json(path, payload):
    """Writes JSON atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{_unique()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    """The JSON in `path`, or None when there is none (or a half-written one)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_model(model, path):
    """`model.save(path)` atomically (Keras wants the .keras suffix on the temporary name too)."""
    tmp = f"{path[:-len('.keras')]}.{_unique()}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _unique():
    """A temporary-name part no other process uses: shards sharing a folder may write the same
    file (config.json, a teacher) at the same moment, and must not write into each other's."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_history(path, rows):
    """history.csv from rows (dicts with an "epoch" key), atomically."""
    fields = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_history(path):
    """Rows of a history.csv, tolerating a run killed mid-write.

    A last line without its newline, or a row whose field count differs from the header, is a
    partial write: it and anything after it are dropped.

    Args:
        path: a history.csv.

    Returns:
        (rows, truncated): rows are dicts column -> float (NaN where Keras wrote "NA" or
        nothing); rows is None when the file is missing or has no header; truncated says
        whether a partial line was dropped.
    """
    try:
        with open(path, newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None, False
    lines = text.splitlines(keepends=True)
    truncated = bool(lines) and not lines[-1].endswith(("\n", "\r"))
    if truncated:
        lines = lines[:-1]
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        return None, truncated
    rows = []
    for fields in reader:
        row = _history_row(header, fields)
        if row is None:
            return rows, True
        rows.append(row)
    return rows, truncated


def _history_row(header, fields):
    if len(fields) != len(header):
        return None
    row = {}
    for name, value in zip(header, fields):
        try:
            row[name] = float(value) if value not in ("", "NA") else float("nan")
        except ValueError:
            return None
    return row


def history_columns(path):
    """history.csv as {column: [value per epoch]}, None where a value is missing."""
    rows = read_history(path)[0] or []
    return {k: [None if r[k] != r[k] else r[k] for r in rows] for k in (rows[0] if rows else {})}


def read_config(path):
    """The parsed config.json of study folder `path`; StudyError saying what to pass otherwise."""
    file = os.path.join(path, CONFIG)
    if not os.path.isdir(path):
        raise StudyError(f"{path} is not a folder; pass a study folder such as "
                         "runs/resolution_sweep/default.")
    try:
        with open(file) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise StudyError(f"{path} has no config.json, so it is not a study folder; pass "
                         "the folder a recipe wrote, e.g. runs/resolution_sweep/default.") from None
    except (OSError, ValueError) as e:
        raise StudyError(f"{file} is unreadable ({e}); rerun the recipe to rewrite it.") from None
    if not isinstance(config, dict):
        raise StudyError(f"{file} holds {type(config).__name__}, not a JSON object.")
    return config


def read_runs(path):
    """(complete runs sorted by run_id, [(folder, reason)] for the runs left out).

    Each run is its metrics.json, with "_folder" (its folder's name) and "_study" (`path`).
    """
    runs_dir = os.path.join(path, RUNS)
    folders = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
    runs, skipped = [], []
    for folder in folders:
        if not os.path.isdir(os.path.join(runs_dir, folder)):
            continue
        metrics, reason = read_metrics(os.path.join(runs_dir, folder, METRICS))
        if reason:
            skipped.append((f"{RUNS}/{folder}", reason))
            continue
        # The folder name stands in for a missing run_id so every row has a key.
        metrics["run_id"] = str(metrics.get("run_id") or folder)
        metrics["_folder"], metrics["_study"] = folder, path
        runs.append(metrics)
    runs.sort(key=lambda r: r["run_id"])
    return runs, skipped


def read_metrics(path):
    """(metrics dict, None) for a complete run, else (None, why it is skipped)."""
    try:
        with open(path) as f:
            metrics = json.load(f)
    except FileNotFoundError:
        return None, "no metrics.json (the run did not finish)"
    except (OSError, ValueError) as e:
        return None, f"metrics.json unreadable ({e})"
    if not isinstance(metrics, dict):
        return None, "metrics.json is not a JSON object"
    if metrics.get("complete") is not True:
        return None, "metrics.json is marked \"complete\": false"
    return metrics, None


def run_history_path(run):
    """The history.csv of a run read by `read_runs`."""
    return os.path.join(run["_study"], RUNS, run["_folder"], HISTORY)


def _versions():
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _git_commit():
    """The commit of the tfkd checkout, when tfkd runs from one."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
