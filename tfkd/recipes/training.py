"""The Keras pieces of a study's training: the optimizer, and callbacks that make training safe
to kill and run again, timed per epoch, and bounded in time."""

import os
import time

import keras

from tfkd.recipes import folder


def adam(learning_rate, steps):
    """Adam with a cosine decay to zero over `steps`: short schedules need the final low rate."""
    return keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps)))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that a kill at any moment cannot corrupt.

    Keras overwrites one weights file in place and writes the epoch number next to it, so a
    kill mid-write leaves a broken file (measured: "bad object header version number" on the
    next start). Here each epoch's weights go to a new file, and only then does an atomic
    rename of the metadata point at them; the previous epoch's file is removed after that.

    The metadata also keeps the random state of every dropout layer, which Keras's weights
    files leave out (keras-team/keras#19796): a resumed run draws the masks the uninterrupted
    one would have, so it ends with the same weights.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        seeds = [v.numpy().tolist() for v in _seed_states(self.model)]
        folder.write_json(self._training_metadata_path,
                          {"epoch": self._current_epoch, "weights": name, "seed_states": seeds})
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def on_train_begin(self, logs=None):
        metadata = folder.read_json(self._training_metadata_path)
        if not metadata:
            return  # nothing finished yet: start from epoch 0
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        states, saved = _seed_states(self.model), metadata.get("seed_states") or []
        if len(states) == len(saved):  # the same model: restore where its masks had got to
            for variable, value in zip(states, saved):
                variable.assign(value)
        self.model._initial_epoch = metadata["epoch"]


def _seed_states(model):
    """The random-state variables of the model's layers (dropout), in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class HistoryCSV(keras.callbacks.Callback):
    """history.csv with one row per finished epoch, rewritten atomically each epoch.

    Unlike keras.callbacks.CSVLogger(append=True), a run resumed after a kill does not repeat
    the rows of epochs it trains again: rows from the resumed epoch on are dropped first.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in folder.read_history(self.path)[0] or [] if int(r["epoch"]) < epoch]
        rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        folder.write_history(self.path, [{**r, "epoch": int(r["epoch"])} for r in rows])


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
