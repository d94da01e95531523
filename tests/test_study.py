"""The study folder's pieces: kill-safe backups, history rows, config checks, progress."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd

from tfkd.checks import label_errors
from tfkd.recipes import engine, folder, inputs, training
from tfkd.recipes.config import ConfigError, StudyConfig
from tests.helpers import batch, tiny_cnn


def _compiled(seed=0):
    keras.utils.set_random_seed(seed)
    model = tiny_cnn(8, 3)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Killed(Exception):
    pass


class KillAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed


def test_backup_resumes_after_the_last_finished_epoch_and_ignores_a_half_written_file(tmp_path):
    x, y = batch(8, n=32)
    backup = tmp_path / "backup"
    model = _compiled()
    with pytest.raises(Killed):
        model.fit(x, y, epochs=5, verbose=0, batch_size=8,
                  callbacks=[training.AtomicBackupAndRestore(str(backup)), KillAfter(1)])
    saved = [w.copy() for w in model.get_weights()]
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    # A kill while the next epoch's weights were being written leaves a broken file behind.
    (backup / "epoch-3.weights.h5").write_bytes(b"\x89HDF half written")
    resumed, epochs = _compiled(seed=1), []
    resumed.fit(x, y, epochs=5, verbose=0, batch_size=8, callbacks=[
        training.AtomicBackupAndRestore(str(backup)),
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e)),
        keras.callbacks.LambdaCallback(on_train_begin=lambda logs: [
            np.testing.assert_array_equal(a, b)
            for a, b in zip(resumed.get_weights(), saved)])])
    assert epochs == [2, 3, 4]
    assert int(resumed.optimizer.iterations) == 5 * 4  # the optimizer state came back too


def _compiled_with_dropout(seed=0):
    keras.utils.set_random_seed(seed)
    model = tfkd.create_model("convnet_s", image_size=8, num_classes=3, dropout_rate=0.5)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_resumed_run_draws_the_dropout_masks_an_uninterrupted_one_would(tmp_path):
    x, y = batch(8, n=32)
    whole = _compiled_with_dropout()
    whole.fit(x, y, epochs=4, verbose=0, batch_size=8, shuffle=False)
    killed = _compiled_with_dropout()
    with pytest.raises(Killed):
        killed.fit(x, y, epochs=4, verbose=0, batch_size=8, shuffle=False, callbacks=[
            training.AtomicBackupAndRestore(str(tmp_path / "b")), KillAfter(1)])
    resumed = _compiled_with_dropout(seed=1)  # another process: other initial masks
    resumed.fit(x, y, epochs=4, verbose=0, batch_size=8, shuffle=False,
                callbacks=[training.AtomicBackupAndRestore(str(tmp_path / "b"))])
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_history_rows_of_a_retrained_epoch_replace_the_old_ones(tmp_path):
    path = tmp_path / "history.csv"
    writer = training.HistoryCSV(str(path))
    for epoch in (0, 1, 2):
        writer.on_epoch_end(epoch, {"accuracy": 0.1 * epoch})
    writer.on_epoch_end(1, {"accuracy": 0.9})  # resumed from the end of epoch 0
    history = folder.history_columns(str(path))
    assert history == {"epoch": [0.0, 1.0], "accuracy": [0.0, 0.9]}
    assert "\r" not in path.read_text()


def test_a_study_refuses_other_settings_under_the_same_name(tmp_path):
    engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path), epochs=3, verbose=0))
    # Presentation settings may change; the same settings resume.
    engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path), epochs=3, verbose=2))
    with pytest.raises(ConfigError, match="other values of epochs; pass name=NEW") as refused:
        engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path), epochs=4))
    assert "other values of --epochs; pass --name=NEW" in refused.value.as_flags()
    config = json.loads((tmp_path / "sweep" / "default" / "config.json").read_text())
    assert config["flags"]["epochs"] == 3 and config["versions"]["keras"]
    assert config["flags"]["seeds"] == ["0"] and "verbose" not in config["flags"]


def test_a_study_made_before_a_setting_existed_resumes_with_its_default(tmp_path):
    study = engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path)))
    config = json.loads((tmp_path / "sweep" / "default" / "config.json").read_text())
    del config["flags"]["delegates"]  # as a study folder written before --delegates
    folder.write_json(str(tmp_path / "sweep" / "default" / "config.json"), config)
    assert engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path))).dir == study.dir
    with pytest.raises(ConfigError, match="other values of delegates"):
        engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path), delegates=("none",)))


def test_only_complete_runs_count_as_done(tmp_path):
    study = engine.open_study("sweep", StudyConfig(output_dir=str(tmp_path)))
    assert study.completed("a") is None
    folder.write_json(f"{study.run_dir('a')}/metrics.json", {"complete": False})
    assert study.completed("a") is None
    study.finish("a", {"test_accuracy": 0.5})
    assert study.completed("a") == {"test_accuracy": 0.5, "run_id": "a", "complete": True}


def test_progress_prints_elapsed_and_eta(capsys):
    progress = engine.Progress(3)
    progress.finished("a", None)
    progress.finished("b", "test accuracy 0.5", seconds=60.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run 1/3 a: skipped, already complete (elapsed ")
    assert lines[1].startswith("run 2/3 b: test accuracy 0.5 (elapsed ")
    assert lines[1].endswith("ETA 1m00s)")


def test_time_budget_stops_training_mid_epoch():
    x, y = batch(8, n=64)
    model = _compiled()
    budget = training.TimeBudget(budget_s=0.0)
    history = model.fit(x, y, epochs=20, verbose=0, batch_size=8, callbacks=[budget])
    assert len(history.epoch) == 1


def test_the_scratch_pipeline_checks_labels_as_the_distiller_does():
    images, labels = np.zeros((8, 8, 8, 3), np.uint8), np.array([0, 1, 2, 0, 1, 2, 0, 3])
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    model = tiny_cnn(8, 3)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"label 3 at position 3 of a batch is outside \[0, 3\)"
                                         ": the models have 3 classes; labels look 1-based"):
        with label_errors(3):
            model.fit(inputs.resized(data, 8, num_classes=3), verbose=0)
