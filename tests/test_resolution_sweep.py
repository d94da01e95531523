"""The resolution sweep end to end on a small real Fashion-MNIST subset: layout, resume, report."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tfkd
from tfkd import tflite_file
from tfkd.recipes import arch_pairing, resolution_sweep
from tfkd.recipes.config import ConfigError

TINY = ["--teacher=convnet_s", "--teacher_size=16", "--data_size=16", "--student=convnet_s",
        "--resolutions=8,12", "--limit=512", "--teacher_limit=512", "--test_limit=256",
        "--epochs=2", "--teacher_epochs=2", "--batch_size=64", "--bench_threads=1"]


def sweep(out, *extra, timeout=600):
    command = [sys.executable, "-m", "tfkd.recipes.resolution_sweep", *TINY,
               f"--output_dir={out}", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def run_folders(study):
    return sorted(os.listdir(study / "runs"))


def history_epochs(path):
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    done = sweep(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "resolution_sweep" / "default", done


def test_the_study_folder_holds_every_file_the_report_needs(finished):
    study, done = finished
    ids = ["convnet_s-r12-kd-s0", "convnet_s-r12-scratch-s0", "convnet_s-r8-kd-s0",
           "convnet_s-r8-scratch-s0"]
    assert run_folders(study) == ids
    config = json.loads((study / "config.json").read_text())
    assert config["seeds"] == [0] and config["flags"]["resolutions"] == ["8", "12"]
    assert config["versions"]["tensorflow"] and "hbm_oom_exit" not in config["flags"]
    (teacher,) = os.listdir(study / "teachers")
    assert (study / "teachers" / teacher / "teacher.keras").exists()
    # --teacher_cache=auto: the teacher ran once per split, and every KD run reused it.
    for split, count in (("train", 512), ("test", 256)):
        cache = tfkd.TeacherCache.load(str(study / "teachers" / teacher / f"logits-{split}.npz"))
        assert cache.count == count and cache.num_classes == 10
    assert done.stdout.count("teacher cache: wrote") == 2
    for run_id in ids:
        folder = study / "runs" / run_id
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["complete"] and metrics["run_id"] == run_id
        assert history_epochs(folder / "history.csv") == [0, 1]
        assert (folder / "student.keras").exists()
        assert os.listdir(folder / "tensorboard") and not (folder / "backup").exists()
        assert metrics["macs"] > 0 and metrics["peak_rss_mb"] > 100
        distilled = metrics["mode"] == "kd"
        assert (metrics["teacher"] == "convnet_s") == distilled
        assert metrics["teacher_cache"] == distilled
        # Distilled students are the answer: exported, checked and timed; baselines are not.
        assert (folder / "student_int8.tflite").exists() == distilled
        if distilled:
            assert metrics["tflite"]["int8"]["bytes"] == (folder / "student_int8.tflite").stat(
            ).st_size
            activation_kb = tflite_file.read_info(
                str(folder / "student_int8.tflite")).peak_activation_bytes / 1024
            assert metrics["tflite"]["int8"]["activation_kb"] == activation_kb > 0
            assert metrics["bench"][0]["target"] == "local"
            assert metrics["bench"][0]["median_ms"] > 0
        else:
            assert metrics["tflite"] == {} and metrics["bench"] == []
    with open(study / "results.csv", newline="") as f:
        assert sorted(row["run_id"] for row in csv.DictReader(f)) == ids
    assert (study / "report.md").exists() and (study / "plots" / "training_curves.png").exists()
    assert "run 4/4 convnet_s-r12-scratch-s0: test accuracy" in done.stdout
    assert "ETA" in done.stdout and "report:" in done.stdout


def test_the_same_command_again_skips_every_finished_run(finished):
    study, _ = finished
    stamps = {r: os.path.getmtime(study / "runs" / r / "metrics.json") for r in run_folders(study)}
    again = sweep(study.parent.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped, already complete") == 4
    assert "reusing" in again.stdout and "Training teacher" not in again.stdout
    assert stamps == {r: os.path.getmtime(study / "runs" / r / "metrics.json")
                      for r in run_folders(study)}


def test_other_flags_under_the_same_name_are_refused(finished):
    study, _ = finished
    done = sweep(study.parent.parent, "--epochs=3")
    assert done.returncode != 0
    assert "holds a study made with other values of --epochs; pass --name=NEW" in done.stderr


def test_a_sweep_killed_mid_training_finishes_with_every_run_once(tmp_path):
    out = tmp_path / "killed"
    study = out / "resolution_sweep" / "default"
    command = [sys.executable, "-m", "tfkd.recipes.resolution_sweep", *TINY,
               f"--output_dir={out}", "--epochs=3", "--scratch=false", "--teacher_cache=off"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = study / "runs" / "convnet_s-r8-kd-s0" / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(history_epochs(history)) >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # the first run has finished an epoch, not the last
    process.wait()
    assert not (study / "runs" / "convnet_s-r8-kd-s0" / "metrics.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_folders(study) == ["convnet_s-r12-kd-s0", "convnet_s-r8-kd-s0"]
    for run_id in run_folders(study):
        assert history_epochs(study / "runs" / run_id / "history.csv") == [0, 1, 2]
        metrics = json.loads((study / "runs" / run_id / "metrics.json").read_text())
        assert metrics["complete"] and metrics["teacher_cache"] is False
    assert not list(study.rglob("logits-*.npz"))  # --teacher_cache=off
    assert not [p for p in study.rglob("*.tmp*")]  # no half-written file left anywhere


def refused(config):
    """(the message a Python user sees, the one the command line prints) for a bad config."""
    with pytest.raises(ConfigError) as error:
        config.check()
    return str(error.value), error.value.as_flags()


def test_bad_settings_are_refused_before_any_training_with_what_to_pass():
    python, flags = refused(resolution_sweep.Config(resolutions=(32, "4x")))
    assert flags == ("--resolutions must be comma-separated integers, got '32,4x'; e.g. "
                     "--resolutions=32,48,64")
    assert python.startswith("resolutions must be comma-separated integers, got '32,4x'")
    _, flags = refused(resolution_sweep.Config(resolutions=(16, 32)))
    assert flags == ("--resolutions=16,32: mobilenetv3_small needs sides of at least 32; drop "
                     "[16] or pick another model.")
    _, flags = refused(resolution_sweep.Config(seeds=("a",)))
    assert flags == "--seeds must be comma-separated integers >= 0, got 'a'; e.g. --seeds=0,1,2"
    _, flags = refused(resolution_sweep.Config(student="mobilenet_v9"))
    assert flags.startswith("unknown model(s) ['mobilenet_v9']; choose from [")
    _, flags = refused(resolution_sweep.Config(delegates=("xnnpack", "npu")))
    assert flags == ("--delegates=xnnpack,npu: unknown delegate(s) ['npu']; choose from "
                     "xnnpack, gpu, nnapi, none")
    _, flags = refused(resolution_sweep.Config(quantization="int4"))
    assert flags.startswith("--quantization='int4'; choose one of ")
    resolution_sweep.Config(resolutions=(32, 48)).check()


def test_zero_counts_and_empty_model_lists_are_refused():
    for name in ("epochs", "teacher_epochs", "batch_size"):
        python, flags = refused(resolution_sweep.Config(**{name: 0}))
        assert (python, flags) == (f"{name}=0; pass at least 1", f"--{name}=0; pass at least 1")
    _, flags = refused(arch_pairing.Config(students=()))
    assert flags.startswith("--students is empty; name at least one model")


def test_a_python_config_accepts_lists_and_single_values():
    config = resolution_sweep.Config(resolutions=[32, 48], seeds=1, targets="local")
    assert (config.resolutions, config.seeds, config.targets) == ((32, 48), (1,), ("local",))


def test_bad_flags_print_a_usage_error_naming_the_flag(tmp_path):
    done = sweep(tmp_path, "--resolutions=8,4x")
    assert done.returncode != 0
    assert "--resolutions must be comma-separated integers, got '8,4x'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "resolution_sweep").exists()


def test_a_bad_target_is_refused_before_training(tmp_path):
    done = sweep(tmp_path, "--targets=phone")
    assert done.returncode != 0 and "--targets: target='phone'; use 'local'" in done.stderr
    assert not (tmp_path / "resolution_sweep" / "default" / "teachers").exists()
