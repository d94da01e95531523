"""tfkd.report: results.csv, report.md and plots rebuilt from a fake study folder."""

import csv
import json
import math
import os
import statistics
import subprocess
import sys

import matplotlib.image
import pytest

from tfkd import report
from tfkd.report import findings
from tfkd.report.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("accuracy_vs_latency", "accuracy_memory_vs_resolution", "accuracy_vs_params",
         "training_curves")

# (student, family, kind, params, mode, seed) -> test accuracy. Two students x kd/scratch x
# two seeds; the hand-computed numbers in the tests below come from these.
ACCURACY = {
    ("mobilenetv3_small", "kd", 0): 0.8600, ("mobilenetv3_small", "kd", 1): 0.8630,
    ("mobilenetv3_small", "scratch", 0): 0.8400, ("mobilenetv3_small", "scratch", 1): 0.8450,
    ("efficientnet_b0", "kd", 0): 0.8800, ("efficientnet_b0", "kd", 1): 0.8760,
    ("efficientnet_b0", "scratch", 0): 0.8700, ("efficientnet_b0", "scratch", 1): 0.8650,
}
STUDENTS = {"mobilenetv3_small": ("mobilenet", 1540218, 2.0),
            "efficientnet_b0": ("efficientnet", 4062381, 9.0)}


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _history(mode, accuracy, epochs=3):
    """A CSVLogger-style history whose last val_accuracy is `accuracy`."""
    columns = ["epoch", "accuracy"] + (["distillation_loss"] if mode == "kd" else [])
    columns += ["loss", "val_accuracy", "val_loss"]
    lines = [",".join(columns)]
    for epoch in range(epochs):
        val = accuracy - 0.02 * (epochs - 1 - epoch)
        values = [epoch, val - 0.01] + ([0.5] if mode == "kd" else []) + [0.4, val, 0.45]
        lines.append(",".join(str(v) for v in values))
    return "\n".join(lines) + "\n"


def _metrics(student, mode, seed, accuracy):
    family, params, latency = STUDENTS[student]
    run_id = f"{student}-r32-{mode}-s{seed}"
    tflite_path = f"runs/x/y/runs/{run_id}/student_int8.tflite"
    bench = [{"target": target, "threads": 1, "median_ms": latency * factor,
              "p95_ms": latency * factor * 1.2, "peak_memory_mb": 30.0,
              "model_path": tflite_path, "tool": "litert"}
             for target, factor in (("local", 1.0), ("adb:emulator-5554", 3.0))]
    return {
        "complete": True, "run_id": run_id, "recipe": "resolution_sweep", "student": student,
        "family": family, "kind": "cnn", "params": params, "resolution": 32, "mode": mode,
        "seed": seed, "teacher": "convnet_m", "teacher_family": "convnet",
        "teacher_kind": "cnn", "teacher_resolution": 28, "teacher_accuracy": 0.90,
        "epochs": 3, "epochs_run": 3, "budget_s": None, "test_accuracy": accuracy,
        "best_accuracy": accuracy, "best_epoch": 3, "last_accuracy": accuracy,
        "teacher_agreement": 0.9 if mode == "kd" else None, "train_seconds": 41.5,
        "epoch_seconds": 13.8, "peak_rss_mb": 1800.0 + seed, "macs": None,
        "tflite": {"int8": {"path": tflite_path, "bytes": 1855304 + seed,
                            "accuracy": accuracy - 0.001, "drop_points": 0.1,
                            "passed": True}},
        "bench": bench, "some_future_key": {"ignored": True},
    }


def make_study(root):
    """A study folder like a recipe writes, with the odd runs a real one accumulates."""
    study = root / "runs" / "resolution_sweep" / "default"
    config = {"recipe": "resolution_sweep", "name": "default",
              "flags": {"teacher": "convnet_m", "epochs": 3, "resolutions": ["32"],
                        "temperature": 4.0, "logtostderr": False},
              "versions": {"tfkd": "0.1.0", "tensorflow": "2.21.0", "keras": "3.15.0",
                           "ai_edge_litert": "2.1.0"},
              "git_commit": "abc123", "seeds": [0, 1], "created": "2026-11-20T10:00:00+00:00"}
    _write(str(study / "config.json"), json.dumps(config))
    for (student, mode, seed), accuracy in ACCURACY.items():
        metrics = _metrics(student, mode, seed, accuracy)
        run_dir = study / "runs" / metrics["run_id"]
        _write(str(run_dir / "metrics.json"), json.dumps(metrics))
        _write(str(run_dir / "history.csv"), _history(mode, accuracy))
    # A killed run's history ends mid-line: the complete epochs must still be read.
    truncated = study / "runs" / "efficientnet_b0-r32-kd-s1" / "history.csv"
    _write(str(truncated), _history("kd", 0.8760)[:-12])
    # A minimal run: one seed, no export, no benchmarks, no history, optional keys absent.
    _write(str(study / "runs" / "vit_tiny-r32-scratch-s0" / "metrics.json"), json.dumps(
        {"complete": True, "run_id": "vit_tiny-r32-scratch-s0", "student": "vit_tiny",
         "family": "vit", "kind": "vit", "params": 500000, "resolution": 32,
         "mode": "scratch", "seed": 0, "test_accuracy": 0.7712, "tflite": {}, "bench": []}))
    _write(str(study / "runs" / "killed-s0" / "history.csv"), _history("kd", 0.5))
    _write(str(study / "runs" / "failed-s0" / "metrics.json"),
           json.dumps({"complete": False, "run_id": "failed-s0", "test_accuracy": 0.99}))
    return study


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("report"))
    return study, report.build(str(study))


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_results_csv_has_each_complete_run_once(built):
    study, written = built
    rows = _read_csv(written["results_csv"])
    expected = sorted([f"{s}-r32-{m}-s{seed}" for s, m, seed in ACCURACY]
                      + ["vit_tiny-r32-scratch-s0"])
    assert [r["run_id"] for r in rows] == expected
    assert list(rows[0])[:6] == ["run_id", "recipe", "student", "family", "kind", "params"]
    assert list(rows[0])[-5:] == ["int8_bytes", "int8_accuracy", "int8_drop_points",
                                  "latency_ms[local,t1]", "latency_ms[adb:emulator-5554,t1]"]
    by_id = {r["run_id"]: r for r in rows}
    row = by_id["mobilenetv3_small-r32-kd-s1"]
    assert float(row["test_accuracy"]) == 0.863
    assert row["int8_bytes"] == "1855305"
    assert float(row["latency_ms[local,t1]"]) == 2.0
    assert float(row["latency_ms[adb:emulator-5554,t1]"]) == 6.0
    assert row["macs"] == "" and row["teacher_agreement"] == "0.9"
    vit = by_id["vit_tiny-r32-scratch-s0"]
    assert vit["int8_bytes"] == vit["latency_ms[local,t1]"] == vit["teacher"] == ""


def _accuracy_text(values):
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def test_report_md_has_means_gain_and_skipped_runs(built):
    study, written = built
    with open(written["report_md"]) as f:
        text = f.read()
    assert text.startswith("# resolution_sweep / default")
    kd = [ACCURACY["mobilenetv3_small", "kd", s] for s in (0, 1)]
    scratch = [ACCURACY["mobilenetv3_small", "scratch", s] for s in (0, 1)]
    assert _accuracy_text(kd) == "86.15 ± 0.21"
    assert "| mobilenetv3_small | 32 | kd | convnet_m | 2 | 86.15 ± 0.21 |" in text
    gain = 100 * (statistics.fmean(kd) - statistics.fmean(scratch))
    std = 100 * math.hypot(statistics.stdev(kd), statistics.stdev(scratch))
    assert f"+{gain:.2f} ± {std:.2f}" == "+1.90 ± 0.41"
    assert "| 84.25 ± 0.35 | +1.90 ± 0.41 |" in text
    assert "| vit_tiny | 32 | scratch | — | 1 | 77.12 ± — |" in text
    skipped = text.split("## Skipped runs")[1]
    assert "`runs/killed-s0`: no metrics.json" in skipped
    assert "`runs/failed-s0`: metrics.json is marked \"complete\": false" in skipped
    assert "efficientnet_b0-r32-kd-s1`: history.csv ends in a partial line" in text
    assert "Git commit: `abc123`" in text and "| `resolutions` | 32 |" in text
    for name in PLOTS:
        assert f"(plots/{name}.png)" in text


def test_truncated_history_keeps_complete_epochs(built):
    study, _ = built
    rows, truncated = report.read_history(
        str(study / "runs" / "efficientnet_b0-r32-kd-s1" / "history.csv"))
    assert truncated and [r["epoch"] for r in rows] == [0.0, 1.0]
    assert report.read_history(str(study / "nope.csv")) == (None, False)
    # csv.DictWriter, which the recipes' history writer uses, ends lines with CRLF.
    crlf = study / "crlf.csv"
    crlf.write_bytes(b"epoch,accuracy,val_accuracy\r\n0,0.5,0.6\r\n1,0.7,NA\r\n")
    rows, truncated = report.read_history(str(crlf))
    assert not truncated and rows[1]["accuracy"] == 0.7 and math.isnan(rows[1]["val_accuracy"])


@pytest.mark.parametrize("name", PLOTS)
def test_plots_are_valid_pngs(built, name):
    _, written = built
    with open(written[name], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    image = matplotlib.image.imread(written[name])
    assert image.shape[1] > 300 and image.shape[0] > 200


def test_latency_plot_without_benchmarks_says_so(tmp_path):
    study = make_study(tmp_path)
    for run_dir in (study / "runs").iterdir():
        path = run_dir / "metrics.json"
        if path.exists():
            metrics = json.loads(path.read_text())
            metrics["bench"] = []
            path.write_text(json.dumps(metrics))
    written = report.build(str(study))
    assert matplotlib.image.imread(written["accuracy_vs_latency"]).shape[1] > 300
    assert "*no latency measurements*" in open(written["report_md"]).read()
    assert "latency_ms" not in open(written["results_csv"]).readline()


def test_pareto_front_drops_dominated_points_and_ties():
    points = [(10, 0.80),   # 0: front
              (5, 0.70),    # 1: front
              (5, 0.60),    # 2: same latency as 1, less accurate
              (20, 0.80),   # 3: as accurate as 0 but slower
              (10, 0.80),   # 4: duplicate of 0: only the first is kept
              (2, 0.50),    # 5: fastest
              (30, 0.90),   # 6: most accurate
              (25, 0.85),   # 7: front
              (40, 0.88),   # 8: slower and worse than 6
              (1, None)]    # 9: no accuracy: ignored
    assert report.pareto_front(points) == [5, 1, 0, 7, 6]
    assert report.pareto_front([]) == []
    assert report.pareto_front([(3.0, 0.5)]) == [0]


def test_cli_rebuilds_identically(built):
    study, written = built
    with open(written["results_csv"], "rb") as f:
        first = f.read()
    with open(written["report_md"], "rb") as f:
        first_md = f.read()
    result = subprocess.run([sys.executable, "-m", "tfkd.report", str(study)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert written["results_csv"] in result.stdout.splitlines()
    with open(written["results_csv"], "rb") as f:
        assert f.read() == first
    with open(written["report_md"], "rb") as f:
        assert f.read() == first_md
    assert not [p for p in os.listdir(study) if p.endswith(".tmp")]


def test_cli_rejects_a_folder_without_config(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfkd.report", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{tmp_path} has no config.json, so it is not a study folder" in result.stderr


def test_cli_rejects_a_study_without_complete_runs(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "r", "name": "n"}))
    os.makedirs(tmp_path / "runs" / "a")
    assert main([str(tmp_path)]) == 2
    assert "no complete runs (1 incomplete under runs/)" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_runs_missing_optional_keys_do_not_crash(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "r", "name": "n",
                                                      "flags": None, "versions": "?"}))
    _write(str(tmp_path / "runs" / "a" / "metrics.json"), json.dumps({"complete": True}))
    _write(str(tmp_path / "runs" / "b" / "metrics.json"), json.dumps(
        {"complete": True, "run_id": "b", "bench": "x", "tflite": [1], "params": "big",
         "test_accuracy": None, "mode": "kd", "student": "s", "resolution": 32}))
    _write(str(tmp_path / "runs" / "b" / "history.csv"), "epoch,accuracy\n")
    written = report.build(str(tmp_path))
    rows = _read_csv(written["results_csv"])
    assert [r["run_id"] for r in rows] == ["a", "b"] and rows[0]["recipe"] == "r"
    text = open(written["report_md"]).read()
    assert "| s | 32 | kd | — | 1 | — |" in text and "*no usable history.csv*" in text
    for name in PLOTS:
        assert matplotlib.image.imread(written[name]).shape[1] > 300


def test_readme_findings_block_is_generated_from_the_study(tmp_path):
    study = make_study(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{findings.START}\nstale text\n{findings.END}\nafter\n")
    done = subprocess.run([sys.executable, "-m", "tfkd.report", "--readme", str(readme),
                           str(study)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{findings.END}\nafter\n")
    assert "stale text" not in text and "### resolution_sweep" in text
    assert "| Student | Res | Mode | Teacher |" in text and "commit `abc123`" in text
    image = tmp_path / "docs" / "findings" / "resolution_sweep_accuracy_memory_vs_resolution.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(docs/findings/resolution_sweep_accuracy_memory_vs_resolution.png)" in text
    # The paper's findings with their verdicts, as in report.md (two seeds here).
    assert "Findings of the paper that this study checks:" in text
    assert "| Finding | Comparison | Seeds | Effect (95% CI) | Verdict |" in text
    assert "KD beats scratch" in text
    # How the study was made: the flags that differ from the recipe's defaults.
    assert ("`python -m tfkd.recipes.resolution_sweep --resolutions=32` (the other settings "
            "at their defaults) on a 2-core CPU") in text


def test_how_a_study_was_made_names_the_flags_off_their_defaults():
    from tfkd.recipes import arch_pairing
    defaults = arch_pairing.Config().to_flags()
    assert findings.how_made("arch_pairing", defaults) == (
        "`python -m tfkd.recipes.arch_pairing` with its defaults")
    assert findings.how_made("arch_pairing", dict(defaults, seeds=["0", "1", "2"], epochs=5,
                                                  not_a_flag=1)) == (
        "`python -m tfkd.recipes.arch_pairing --epochs=5 --seeds=0,1,2` (the other settings at "
        "their defaults)")
    assert findings.how_made("gone", {}) == "`python -m tfkd.recipes.gone` (its flags are in " \
        "config.json)"


def test_readme_without_the_block_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="has no findings block; add the two lines"):
        findings.update_readme(str(readme), [str(make_study(tmp_path))])


def test_every_plotted_point_can_be_told_apart(tmp_path, monkeypatch):
    """Latency points carry their student, side, mode (unless kd), threads and target; the
    parameter plot names each student once and each point's side when sides differ."""
    from tfkd.report import plots
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, f: figures.append(fig))
    study = report.load_study(str(make_study(tmp_path)))

    def texts():
        return {t.get_text() for ax in figures.pop().axes for t in ax.texts}

    plots.accuracy_vs_latency(study, None)
    labels = texts()
    for student in STUDENTS:
        for target in ("local", "adb:emulator-5554"):
            assert f"{student}@32 1t ({target})" in labels
            assert f"{student}@32 scratch 1t ({target})" in labels
    plots.accuracy_vs_params(study, None)
    assert set(STUDENTS) <= texts()  # one side in this study: no side labels
    for run in study.runs:
        if run["student"] == "efficientnet_b0" and run["mode"] == "kd":
            run["resolution"] = 48
    plots.accuracy_vs_params(study, None)
    assert {"32px", "48px"} <= texts()


def test_peak_activation_memory_comes_from_the_record_or_the_run_folders_file(tmp_path):
    # Runs exported before metrics.json recorded it: the report reads the .tflite in the run's
    # folder, whatever path the record names (the study was made elsewhere).
    import numpy as np
    import tfkd
    study = make_study(tmp_path)
    runs = study / "runs"
    model = tfkd.create_model("convnet_s", image_size=16, num_classes=10)
    from_file = tfkd.export.to_tflite(
        model, str(runs / "mobilenetv3_small-r32-kd-s0" / "student_int8.tflite"),
        representative_data=np.full((2, 16, 16, 3), 128, "float32")).peak_activation_bytes
    recorded = runs / "efficientnet_b0-r32-kd-s0" / "metrics.json"
    metrics = json.loads(recorded.read_text())
    metrics["tflite"]["int8"]["activation_kb"] = 12.5
    recorded.write_text(json.dumps(metrics))
    _write(str(runs / "efficientnet_b0-r32-kd-s1" / "student_int8.tflite"), "damaged")
    loaded = {r["run_id"]: r.get("activation_kb") for r in report.load_study(str(study)).runs}
    assert loaded["mobilenetv3_small-r32-kd-s0"] == from_file / 1024 == 8.0
    assert loaded["efficientnet_b0-r32-kd-s0"] == 12.5
    assert loaded["efficientnet_b0-r32-kd-s1"] is None      # damaged: left out, no crash
    assert loaded["vit_tiny-r32-scratch-s0"] is None        # never exported
    report.build(str(study))
    with open(study / "results.csv") as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    assert rows["efficientnet_b0-r32-kd-s0"]["activation_kb"] == "12.5"
