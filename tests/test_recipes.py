"""The study recipes end to end on tiny real Fashion-MNIST subsets (plumbing, not accuracy)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import tfkd

RECIPES = pathlib.Path(tfkd.__file__).parent / "recipes"
TINY = ["--data_size=16", "--limit=512", "--teacher_limit=512", "--test_limit=256",
        "--batch_size=64", "--teacher_epochs=1", "--epochs=1", "--quantization=none"]


def recipe(name, out, *flags, timeout=600):
    command = [sys.executable, "-m", f"tfkd.recipes.{name}", *TINY, f"--output_dir={out}",
               *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, out / name / "default"


def metrics(study):
    return {run: json.loads((study / "runs" / run / "metrics.json").read_text())
            for run in sorted(os.listdir(study / "runs"))}


def test_arch_pairing_runs_every_teacher_student_pair_and_scratch(tmp_path):
    out, study = recipe("arch_pairing", tmp_path, "--teachers=convnet_s,vit_micro",
                        "--students=convnet_s,deit_micro", "--student_size=16",
                        "--teacher_size=16")
    runs = metrics(study)
    assert sorted(runs) == sorted(
        f"{s}-r16-{m}-s0" for s in ("convnet_s", "deit_micro")
        for m in ("scratch", "kd-convnet_s", "kd-vit_micro"))
    pairs = {(r["teacher_kind"], r["kind"]) for r in runs.values() if r["mode"] == "kd"}
    assert pairs == {("cnn", "cnn"), ("cnn", "vit"), ("vit", "cnn"), ("vit", "vit")}
    assert "gain_pts" in out and "(scratch)" in out and len(os.listdir(study / "teachers")) == 2
    assert (study / "report.md").exists()


def test_student_size_stops_each_student_at_the_time_budget(tmp_path):
    out, study = recipe("student_size", tmp_path, "--students=convnet_s,convnet_m",
                        "--student_size=16", "--teacher=convnet_s", "--teacher_size=16",
                        "--epochs=50", "--budget_s=2")
    runs = metrics(study)
    assert sorted(runs) == ["convnet_m-r16-kd-s0", "convnet_s-r16-kd-s0",
                            "convnet_s-r16-scratch-s0"]
    for run in runs.values():
        # 50 epochs would take minutes; the budget ends each run after a few. (No bound on the
        # seconds themselves: on a loaded machine graph tracing alone can exceed the budget.)
        assert 1 <= run["epochs_run"] < 50 and run["budget_s"] == 2.0
    assert "epochs" in out


def test_finetune_after_kd_starts_from_the_distilled_student(tmp_path):
    out, study = recipe("finetune_after_kd", tmp_path, "--student=convnet_s",
                        "--student_size=16", "--teacher=convnet_s", "--teacher_size=16",
                        "--kd_epochs=1", "--ft_epochs=1")
    runs = metrics(study)
    assert sorted(r["mode"] for r in runs.values()) == ["kd", "kd+ft", "kd-stage", "scratch"]
    finetuned = runs["convnet_s-r16-kd+ft-s0"]
    assert finetuned["init_from"] == str(study / "runs" / "convnet_s-r16-kd-stage-s0" /
                                         "student.keras")
    assert finetuned["learning_rate"] == 5e-4 and finetuned["teacher"] == "convnet_s"
    assert runs["convnet_s-r16-kd-s0"]["epochs"] == 2 == runs["convnet_s-r16-scratch-s0"]["epochs"]


def test_train_teacher_saves_a_teacher_that_loads(tmp_path):
    out, study = recipe("train_teacher", tmp_path, "--teacher=convnet_s", "--teacher_size=16",
                        "--teacher_epochs=3", "--teacher_patience=1")
    (folder,) = os.listdir(study / "teachers")
    info = json.loads((study / "teachers" / folder / "teacher.json").read_text())
    assert 1 <= info["epochs_run"] <= 3 and 0 <= info["accuracy"] <= 1
    assert info["config"]["teacher"] == "convnet_s" and "saved as" in out
    again, _ = recipe("train_teacher", tmp_path, "--teacher=convnet_s", "--teacher_size=16",
                      "--teacher_epochs=3", "--teacher_patience=1")
    assert "reusing" in again


@pytest.mark.parametrize("name", ["arch_pairing", "finetune_after_kd", "resolution_sweep",
                                  "student_size", "train_teacher"])
def test_every_recipe_documents_its_flags_and_ships_its_flag_files(name):
    done = subprocess.run([sys.executable, "-m", f"tfkd.recipes.{name}", "--helpfull"],
                          capture_output=True, text=True, timeout=120)
    assert "--seeds: Seeds; every run is repeated once per seed" in done.stdout
    assert "--targets: Where to time each exported student" in done.stdout
    for kind in ("quick", "paper"):
        lines = (RECIPES / kind / f"{name}.flags").read_text().splitlines()
        assert lines[0].startswith("# ")  # what it is, and for paper runs the expected runtime
        names = [line[2:].split("=", 1)[0] for line in lines if line.startswith("--")]
        unknown = [n for n in names
                   if f"--{n}:" not in done.stdout and f"--[no]{n}:" not in done.stdout]
        assert names and not unknown, (kind, unknown)
