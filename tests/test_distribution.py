"""Distribution: KD on two replicas and two workers, --strategy, sweeps split across machines."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import keras
import tensorflow as tf

import tfkd
from tfkd import report
from tfkd.recipes import distributed, engine, student_size
from tfkd.recipes.config import ConfigError, StudyConfig
from tfkd.report.__main__ import main as report_main
from tests import distributed_worker
from tests.helpers import batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGGED = ("loss", "student_loss", "distillation_loss", "accuracy", "teacher_agreement")
# A recipe in a subprocess whose CPU is split into two logical devices (as conftest.py does
# here), so that --strategy=mirrored trains on two real replicas.
TWO_CPUS = ("import runpy, sys, tensorflow as tf; "
            "cpu = tf.config.list_physical_devices('CPU')[0]; "
            "tf.config.set_logical_device_configuration("
            "cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
            "sys.argv = sys.argv[1:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
# The smallest settings of the recipe tests: 512 training images, one epoch each.
TINY = ["--teacher=convnet_s", "--teacher_size=16", "--data_size=16", "--student=convnet_s",
        "--resolutions=8", "--limit=512", "--teacher_limit=512", "--test_limit=256",
        "--epochs=1", "--teacher_epochs=1", "--batch_size=64", "--bench_threads=1"]


def test_a_kd_step_on_two_replicas_matches_one_device():
    mirrored = tfkd.distribute.get_strategy("mirrored")
    # No GPU here: "mirrored" spans the CPU devices, two since conftest.py split the CPU.
    assert mirrored.num_replicas_in_sync == 2
    assert all("CPU" in d for d in mirrored.extended.worker_devices)
    # A global batch of 8: 4 per replica. (With an odd batch the replicas' shares differ; the
    # logged losses still match, but the update averages the two shares' means, as Keras's
    # own losses do, and drifts from the one-device step.)
    x, y = batch(16, n=8, seed=3)
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        distiller, student = distributed_worker.build_distiller(strategy)
        before = student.get_weights()
        logs = distiller.train_on_batch(x, y, return_dict=True)
        evaluated = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        results.append((logs, evaluated, before, student.get_weights()))
    (one_logs, one_eval, one_before, one_after), (two_logs, two_eval, two_before,
                                                  two_after) = results
    for key in LOGGED:
        np.testing.assert_allclose(two_logs[key], one_logs[key], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(two_eval[key], one_eval[key], rtol=1e-5, atol=1e-7,
                                   err_msg=key)
    for start_one, start_two, end_one, end_two in zip(one_before, two_before, one_after,
                                                      two_after):
        np.testing.assert_array_equal(start_one, start_two)
        np.testing.assert_allclose(end_two, end_one, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(one_before, one_after))  # it did learn


def test_mirrored_twice_in_one_process_trains_both_times():
    # A re-run notebook cell: a second "mirrored" strategy after one that trained, on a model
    # of other shapes. With collective ops the second failed ("Shape mismatch in the
    # collective instance"), their instance keys restarting with each strategy.
    x, y = batch(8, n=16, seed=4)
    for width in (6, 20):
        strategy = tfkd.distribute.get_strategy("mirrored")
        with strategy.scope():
            model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                                      keras.layers.Flatten(),
                                      keras.layers.Dense(width), keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        loss = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]
        assert np.isfinite(loss)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_as_one_device():
    # Two processes on this machine form a real two-worker cluster (gRPC on localhost).
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "tests.distributed_worker"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {
            "type": "worker", "index": index}})}) for index in range(2)]
    try:
        results = [p.communicate(timeout=240) for p in processes]
    finally:
        for p in processes:  # a worker whose peer died would wait for it forever
            p.kill()
    for p, (out, err) in zip(processes, results):
        assert p.returncode == 0, err[-3000:]
    chief, other = (json.loads(out.strip().splitlines()[-1]) for out, _ in results)
    assert chief["replicas"] == other["replicas"] == 2
    logs, evaluated, weights = distributed_worker.kd_epoch(tf.distribute.get_strategy())
    for key in LOGGED:
        for worker in (chief, other):
            np.testing.assert_allclose(worker["logs"][key], logs[key], rtol=1e-5, err_msg=key)
            np.testing.assert_allclose(worker["evaluate"][key], evaluated[key], rtol=1e-5,
                                       atol=1e-7, err_msg=key)
    for one, first, second in zip(weights, chief["weights"], other["weights"]):
        np.testing.assert_array_equal(first, second)  # the workers stay in sync
        np.testing.assert_allclose(first, one, rtol=1e-5, atol=1e-6)


def test_unknown_strategy_and_bad_tf_config_say_what_to_pass(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy 'horovod'; use one of default, "
                                         "mirrored, multi_worker, tpu"):
        tfkd.distribute.get_strategy("horovod")
    read = tfkd.distribute.read_tf_config
    with pytest.raises(ValueError, match="--strategy=multi_worker needs the TF_CONFIG "
                                         "environment variable on every worker, e.g. TF_CONFIG="):
        read({})
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        read({"TF_CONFIG": "{cluster: 1}"})
    with pytest.raises(ValueError, match=r'TF_CONFIG has no "cluster": \{"worker"'):
        read({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"]}, "task": {}})})
    with pytest.raises(ValueError, match="must name this machine in the cluster"):
        read({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                       "task": {"type": "worker", "index": 2}})})
    # Through the recipes' flag: a usage error, before any training.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="--strategy=multi_worker needs the TF_CONFIG"):
        distributed.strategy("multi_worker")


def test_tpu_strategy_without_a_tpu_is_a_clear_error():
    if tf.config.list_physical_devices("TPU"):
        pytest.skip("this machine has a TPU")
    with pytest.raises(ConfigError, match=r"--strategy=tpu found no TPU \(TPU 'local': "
                                             r"TPUs not found in the cluster\); run on a Cloud "
                                             r"TPU VM, or set TPU_NAME"):
        distributed.strategy("tpu")


def test_only_the_chief_worker_writes_to_the_output_dir(monkeypatch):
    cluster = {"worker": ["a:1", "b:1"]}
    cfg = StudyConfig(strategy="multi_worker", output_dir="runs")
    for index, root in ((0, "runs"), (1, os.path.join("runs", "workers", "worker-1"))):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {
            "type": "worker", "index": index}}))
        assert distributed.output_root(cfg) == root
    with_chief = {"cluster": {"chief": ["c:1"], **cluster}, "task": {"type": "worker",
                                                                     "index": 0}}
    assert not tfkd.distribute.is_chief(with_chief)
    assert distributed.output_root(StudyConfig(output_dir="x")) == "x"


def test_settings_that_cannot_work_distributed_are_refused():
    with pytest.raises(ConfigError, match="budget_s cannot be used with strategy=multi_worker") \
            as refused:
        distributed.start_strategy(student_size.Config(strategy="multi_worker", budget_s=60.0,
                                                       batch_size=64))
    assert "--budget_s cannot be used with --strategy=multi_worker" in refused.value.as_flags()
    with pytest.raises(ConfigError) as refused:
        distributed.start_strategy(StudyConfig(strategy="mirrored", batch_size=63))
    assert refused.value.as_flags() == ("--batch_size=63 does not split evenly across the 2 "
                                        "replicas of --strategy=mirrored; pass a multiple of 2, "
                                        "e.g. --batch_size=64")


def _finetune_plan(seeds=(0, 1, 2)):
    """finetune_after_kd's plan: kd+ft starts from its seed's kd-stage student."""
    runs = []
    for seed in seeds:
        spec = dict(student="convnet_s", resolution=16, seed=seed)
        stage = engine.RunSpec(mode="kd-stage", epochs=2, **spec)
        runs += [stage, engine.RunSpec(mode="kd+ft", epochs=1, init_from=os.path.join(
                     "runs", "finetune_after_kd", "default", "runs", stage.run_id,
                     "student.keras"), **spec),
                 engine.RunSpec(mode="kd", epochs=3, **spec),
                 engine.RunSpec(mode="scratch", epochs=3, **spec)]
    return runs


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4, 13])
def test_shards_are_disjoint_cover_every_run_and_keep_dependent_runs_together(num_shards):
    runs = _finetune_plan()
    shards = [distributed.shard_runs(runs, i, num_shards) for i in range(num_shards)]
    ids = [spec.run_id for shard in shards for spec in shard]
    assert sorted(ids) == sorted(spec.run_id for spec in runs)  # each run exactly once
    assert shards == [distributed.shard_runs(runs, i, num_shards) for i in range(num_shards)]
    for shard in shards:
        mine = {spec.run_id for spec in shard}
        for spec in shard:
            if spec.init_from:  # its kd-stage student is trained by the same shard
                assert os.path.basename(os.path.dirname(spec.init_from)) in mine
    # Round-robin over the 9 independent groups (kd-stage with its kd+ft, kd, scratch).
    sizes = [sum(1 for s in shard if s.mode != "kd+ft") for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_bad_shard_flags_say_what_to_pass():
    for index, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ConfigError) as refused:
            StudyConfig(shard_index=index, num_shards=count).check()
        assert refused.value.as_flags().startswith(
            f"--shard_index={index} --num_shards={count}: pass --num_shards=N (N >= 1, the "
            "number of machines) and a different --shard_index from 0 to N-1 on each")
    StudyConfig(shard_index=1, num_shards=2).check()


def _start_shard(out, index, *flags, two_cpus=False):
    module = "tfkd.recipes.resolution_sweep"
    head = [sys.executable, "-c", TWO_CPUS, module] if two_cpus else [sys.executable, "-m",
                                                                      module]
    return subprocess.Popen([*head, *TINY, f"--output_dir={out}", f"--shard_index={index}",
                             "--num_shards=2", *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _csv_runs(path):
    with open(path, newline="") as f:
        return sorted(row["run_id"] for row in csv.DictReader(f))


def test_two_shards_one_mirrored_fill_one_study_and_their_folders_merge(tmp_path):
    kd, scratch = "convnet_s-r8-kd-s0", "convnet_s-r8-scratch-s0"
    # Two machines sharing a folder, at the same time: shard 0 on two replicas trains the
    # teacher, the KD run and its int8 export; shard 1 on one device the scratch run.
    shards = [_start_shard(tmp_path, 0, "--strategy=mirrored", two_cpus=True),
              _start_shard(tmp_path, 1)]
    outputs = []
    for process in shards:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        outputs.append(out)
    assert "strategy mirrored: 2 replica(s); global batch 64, 32 per replica" in outputs[0]
    assert "shard 0 of 2: 1 of 2 runs" in outputs[0] and f"run 1/1 {kd}: test acc" in outputs[0]
    assert f"run 1/1 {scratch}: test acc" in outputs[1]
    assert "Training teacher" not in outputs[1]  # shard 1 distils nothing: it needs no teacher
    study = tmp_path / "resolution_sweep" / "default"
    assert sorted(os.listdir(study / "runs")) == [kd, scratch]
    assert json.loads((study / "runs" / kd / "metrics.json").read_text())["tflite"]["int8"]
    assert report_main([str(study)]) == 0  # the shards' folder is one study
    assert _csv_runs(study / "results.csv") == [kd, scratch]
    assert "Gain pts" in (study / "report.md").read_text()
    # Separate machines: each folder holds its own shard's runs; the report merges them.
    folders = {}
    for run, other in ((kd, scratch), (scratch, kd)):
        folders[run] = tmp_path / run / "resolution_sweep" / "default"
        shutil.copytree(study, folders[run], ignore=lambda d, names, o=other: [
            n for n in names if n in (o, "results.csv", "report.md")])
    merged = tmp_path / "merged"
    assert report_main([str(folders[kd]), str(folders[scratch]), "--output", str(merged)]) == 0
    assert _csv_runs(merged / "results.csv") == [kd, scratch]
    text = (merged / "report.md").read_text()
    assert f"- Merged from: `{folders[kd]}` (1 run)" in text and "Gain pts" in text
    assert not (folders[kd] / "report.md").exists()  # --output: the folders stay as they were
    # Folders of different studies are refused, saying which flag differs.
    config = json.loads((folders[scratch] / "config.json").read_text())
    config["flags"]["epochs"] = 5
    (folders[scratch] / "config.json").write_text(json.dumps(config))
    with pytest.raises(report.StudyError, match=r"run with different flags \(--epochs: 1 vs 5\)"
                                                r"\. Merge only the shards of one study"):
        report.build(str(folders[kd]), str(folders[scratch]))


def _fake_study(folder, name, runs, epochs=1):
    """A study folder as a recipe writes it, with complete runs of the given ids."""
    os.makedirs(folder / "runs")
    (folder / "config.json").write_text(json.dumps({
        "recipe": "resolution_sweep", "name": name, "flags": {"epochs": epochs}}))
    for run_id, accuracy in runs.items():
        os.makedirs(folder / "runs" / run_id)
        (folder / "runs" / run_id / "metrics.json").write_text(json.dumps({
            "complete": True, "run_id": run_id, "student": "s", "resolution": 8,
            "mode": run_id.split("-")[0], "seed": 0, "test_accuracy": accuracy}))


def test_the_report_merges_folders_of_one_study_and_keeps_other_studies_apart(tmp_path, capsys):
    shard_a, shard_b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    _fake_study(shard_a, "default", {"kd-s0": 0.8, "scratch-s0": 0.7})
    _fake_study(shard_b, "default", {"kd-s1": 0.9, "scratch-s0": 0.1})  # scratch-s0 again
    _fake_study(other, "bigger", {"kd-s0": 0.5})
    assert report_main([str(shard_a), str(shard_b), str(other)]) == 0
    assert _csv_runs(shard_a / "results.csv") == ["kd-s0", "kd-s1", "scratch-s0"]
    assert _csv_runs(other / "results.csv") == ["kd-s0"]  # another --name: its own report
    assert not (shard_b / "results.csv").exists()  # the merged report went to the first folder
    text = (shard_a / "report.md").read_text()
    assert f"`{shard_b / 'runs' / 'scratch-s0'}`: also complete in {shard_a}, which is " \
           "reported" in text
    with open(shard_a / "results.csv", newline="") as f:
        assert {r["run_id"]: r["test_accuracy"] for r in csv.DictReader(f)}["scratch-s0"] == "0.7"
    capsys.readouterr()
    assert report_main([str(shard_a), str(other), "--output", str(tmp_path / "out")]) == 2
    assert "--output takes the folders of one study, but these are 2 studies" in \
        capsys.readouterr().err
