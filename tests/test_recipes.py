"""The study recipes end to end on tiny real Fashion-MNIST subsets (plumbing, not accuracy)."""

import dataclasses
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags

import tfkd
from tfkd.recipes import cli, engine, modes, resolution_sweep
from tfkd.recipes.config import PRESENTATION, ConfigError, StudyConfig

FLAG_FILES = pathlib.Path(__file__).parent.parent / "recipes"
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


NAMES = ["arch_pairing", "finetune_after_kd", "resolution_sweep", "student_size", "train_teacher"]


@pytest.mark.parametrize("name", [*NAMES, "budget_search"])
def test_every_recipe_documents_its_flags(name):
    done = subprocess.run([sys.executable, "-m", f"tfkd.recipes.{name}", "--helpfull"],
                          capture_output=True, text=True, timeout=120)
    assert "--seeds: Seeds; every run is repeated once per seed" in done.stdout
    assert "--targets: Where to time each exported student" in done.stdout
    assert "--delegates: Delegates to time each exported student with" in done.stdout
    assert done.stdout.startswith(f"{importlib.import_module(f'tfkd.recipes.{name}').__doc__}"
                                  .split("\n")[0])


def parse_flag_file(name, path):
    """The recipe's Config as its command line would build it from `--flagfile=path`."""
    config_class = importlib.import_module(f"tfkd.recipes.{name}").Config
    flag_values = flags.FlagValues()
    cli.define_flags(config_class, flag_values)
    flag_values(["recipe", f"--flagfile={path}"])
    return cli.config_from_flags(config_class, flag_values)


@pytest.mark.parametrize("name", NAMES)
def test_quick_flag_files_spell_out_every_code_default(name):
    path = FLAG_FILES / "quick" / f"{name}.flags"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and any(line.startswith("# Runtime") for line in lines)
    assert any(line.startswith("# Numbers") for line in lines)
    config = parse_flag_file(name, path)
    assert config == type(config)()  # equal to the code defaults: they cannot drift apart
    named = {line[2:].split("=", 1)[0] for line in lines if line.startswith("--")}
    fields = {f.name for f in dataclasses.fields(config)} - set(PRESENTATION)
    assert named == fields, "a quick file names every setting that changes the study"
    config.check()


@pytest.mark.parametrize("name", NAMES)
def test_paper_flag_files_parse_and_pass_the_checks(name):
    path = FLAG_FILES / "paper" / f"{name}.flags"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and any("Expected runtime" in line for line in lines)
    config = parse_flag_file(name, path)
    assert config.dataset == "tfds:cifar100" and config != type(config)()
    config.check()


def test_a_study_run_from_python_is_the_one_the_command_line_resumes(tmp_path):
    config = resolution_sweep.Config(
        teacher="convnet_s", teacher_size=16, data_size=16, student="convnet_s",
        resolutions=(8,), limit=256, teacher_limit=256, test_limit=128, batch_size=64,
        epochs=1, teacher_epochs=1, quantization="none", output_dir=str(tmp_path), verbose=0)
    rows = resolution_sweep.run(config)
    study = tmp_path / "resolution_sweep" / "default"
    assert [r["run_id"] for r in rows] == ["convnet_s-r8-kd-s0", "convnet_s-r8-scratch-s0"]
    assert rows == [metrics(study)[r["run_id"]] for r in rows]
    assert (study / "report.md").exists()
    written = json.loads((study / "config.json").read_text())["flags"]
    assert written["resolutions"] == ["8"] and written["delegates"] == ["xnnpack"]
    command = [sys.executable, "-m", "tfkd.recipes.resolution_sweep", "--teacher=convnet_s",
               "--teacher_size=16", "--data_size=16", "--student=convnet_s", "--resolutions=8",
               "--limit=256", "--teacher_limit=256", "--test_limit=128", "--batch_size=64",
               "--epochs=1", "--teacher_epochs=1", "--quantization=none",
               f"--output_dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skipped, already complete") == 2 and "reusing" in done.stdout


def test_a_bad_python_config_raises_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"^epochs=0; pass at least 1$"):
        resolution_sweep.run(resolution_sweep.Config(epochs=0, output_dir=str(tmp_path)))
    assert not os.listdir(tmp_path)


def test_flags_are_read_in_the_command_line_module_only():
    package = pathlib.Path(tfkd.__file__).parent
    readers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if re.search(r"\bFLAGS\b", p.read_text()))
    assert readers == ["recipes/cli.py"]


def test_run_modes_come_from_one_table():
    assert modes.SHIPPED == ("kd", "kd+feat", "kd+ft", "kd+qat")
    assert [modes.order(m) for m in ("scratch", "kd", "kd+feat", "kd+ft", "kd-stage", "kd+qat",
                                     "new")] == [0, 1, 2, 3, 4, 5, 6]
    assert [m for m in modes.MODES if modes.get(m).quantization_aware] == ["kd+qat"]
    assert [m for m in modes.MODES if modes.get(m).features] == ["kd+feat"]
    with pytest.raises(ValueError, match=r"unknown run mode 'kd\+dream'; choose one of"):
        engine.RunSpec(student="convnet_s", resolution=16, mode="kd+dream", seed=0, epochs=1)


def test_bench_options_go_to_the_targets_that_take_them():
    config = StudyConfig(targets=("local", "ssh:pi@board", "adb"), bench_options=(
        "config_file=~/pi_config", "ssh_options=A=1", "ssh_options=B=2", "connect_timeout_s=5",
        "benchmark_binary=/b/benchmark_model"))
    config.check()
    assert config.bench_kwargs("local") == {}
    assert config.bench_kwargs("ssh:pi@board") == {
        "config_file": os.path.expanduser("~/pi_config"), "ssh_options": ("A=1", "B=2"),
        "connect_timeout_s": 5.0}
    assert config.bench_kwargs("adb") == {"benchmark_binary": "/b/benchmark_model"}


@pytest.mark.parametrize("name", NAMES + ["budget_search"])
def test_recipe_docstrings_carry_no_measured_numbers(name):
    """Accuracies and runtimes go stale when the code changes; they belong in what is rebuilt
    from study folders (the README's findings block, report.md), not in docstrings."""
    doc = importlib.import_module(f"tfkd.recipes.{name}").__doc__
    stale = re.findall(r"\b0\.\d{3,}\b|\d+ min \d+ s|\d+(?:\.\d+)? ?ms\b", doc)
    assert not stale, f"{name}'s docstring quotes measurements {stale}"
