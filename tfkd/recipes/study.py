"""The folder every recipe writes, and what makes a sweep safe to kill and run again.

    runs/<recipe>/<name>/
        config.json              flags, package versions, git commit, seeds
        teachers/<hash>/         teacher.keras and teacher.json: trained once per teacher config
        runs/<run_id>/           history.csv, student.keras, *.tflite, metrics.json, tensorboard/

Every file is written atomically (a temporary name, then a rename). A run whose metrics.json
exists and says complete is skipped when the same command runs again; a run killed mid-training
resumes from its last finished epoch (keras.callbacks.BackupAndRestore).
"""

import csv
import datetime
import hashlib
import importlib.metadata
import json
import os
import subprocess
import time
import uuid

import keras
from absl import app, flags

# Flags that change how a study is shown or executed, not what it computes: they may differ
# between runs, and between the shards of one study (--shard_index) on different machines.
_PRESENTATION_FLAGS = {"verbose", "verbosity", "output_dir", "name", "strategy", "shard_index",
                       "num_shards"}
_PACKAGES = ("tfkd", "tensorflow", "keras", "ai-edge-litert", "numpy")


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


def recipe_flags():
    """The values of the flags tfkd's recipes define (absl's and TensorFlow's left out)."""
    values = {}
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module.startswith(("absl", "tensorflow", "keras")):
            continue
        values.update({f.name: f.value for f in defined})
    return dict(sorted(values.items()))


class Study:
    """One study folder: `runs/<recipe>/<name>/`.

    Args:
        recipe: the recipe's name.
        output_dir: the root (--output_dir, `runs` by default).
        name: the study's name (--name): the same command with the same name resumes.
        config: the flag values; must equal those of an existing study of that name.
        seeds: the seeds the study runs.
    """

    def __init__(self, recipe, output_dir, name, config, seeds):
        self.dir = os.path.join(output_dir, recipe, name)
        path = os.path.join(self.dir, "config.json")
        kept = {k: v for k, v in config.items() if k not in _PRESENTATION_FLAGS}
        previous = read_json(path)
        if previous is not None:
            old = {k: v for k, v in previous.get("flags", {}).items()
                   if k not in _PRESENTATION_FLAGS}
            changed = sorted(k for k in set(old) | set(kept) if old.get(k) != kept.get(k))
            if changed:
                raise app.UsageError(
                    f"{self.dir} holds a study made with other values of "
                    f"{', '.join('--' + k for k in changed)}; pass --name=NEW for a new study, "
                    "or the same flags to resume this one")
        write_json(path, {"recipe": recipe, "name": name, "flags": kept, "seeds": list(seeds),
                          "versions": _versions(), "git_commit": _git_commit(),
                          "created": (previous or {}).get("created") or _now()})

    def run_dir(self, run_id):
        path = os.path.join(self.dir, "runs", run_id)
        os.makedirs(path, exist_ok=True)
        return path

    def completed(self, run_id):
        """The metrics of a finished run, or None if it has to (re)run."""
        metrics = read_json(os.path.join(self.dir, "runs", run_id, "metrics.json"))
        return metrics if metrics and metrics.get("complete") else None

    def finish(self, run_id, metrics):
        """Marks a run done: its metrics.json is the last file written."""
        metrics = {**metrics, "run_id": run_id, "complete": True}
        write_json(os.path.join(self.run_dir(run_id), "metrics.json"), metrics)
        return metrics

    def teacher_dir(self, teacher_config):
        """The folder of the teacher with this config (a hash of it names the folder)."""
        key = hashlib.sha256(json.dumps(teacher_config, sort_keys=True).encode()).hexdigest()
        path = os.path.join(self.dir, "teachers", key[:12])
        os.makedirs(path, exist_ok=True)
        return path


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


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that a kill at any moment cannot corrupt.

    Keras overwrites one weights file in place and writes the epoch number next to it, so a
    kill mid-write leaves a broken file (measured: "bad object header version number" on the
    next start). Here each epoch's weights go to a new file, and only then does an atomic
    rename of the metadata point at them; the previous epoch's file is removed after that.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        write_json(self._training_metadata_path,
                             {"epoch": self._current_epoch, "weights": name})
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def on_train_begin(self, logs=None):
        metadata = read_json(self._training_metadata_path)
        if not metadata:
            return  # nothing finished yet: start from epoch 0
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]


class HistoryCSV(keras.callbacks.Callback):
    """history.csv with one row per finished epoch, rewritten atomically each epoch.

    Unlike keras.callbacks.CSVLogger(append=True), a run resumed after a kill does not repeat
    the rows of epochs it trains again: rows from the resumed epoch on are dropped first.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in _read_rows(self.path) if int(r["epoch"]) < epoch]
        rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        fields = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def _read_rows(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def read_history(path):
    """history.csv as {column: [values per epoch]}."""
    rows = _read_rows(path)
    return {k: [float(r[k]) if r[k] not in ("", None) else None for r in rows]
            for k in (rows[0] if rows else {})}


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
