"""The resolution sweep recipe end to end on a small real Fashion-MNIST subset."""

import json
import subprocess
import sys

import pytest
from absl import app

from tfkd.recipes import common


def test_sweep_prints_the_table_and_writes_results(tmp_path):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "tfkd.recipes.resolution_sweep", "--teacher=convnet_s",
               "--teacher_size=16", "--data_size=16", "--student=convnet_s",
               "--resolutions=8,12", "--limit=512", "--test_limit=256", "--epochs=1",
               "--teacher_epochs=1", "--batch_size=64", f"--output_dir={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("resolution     params  test_acc  agreement  epoch_s tflite_kB  int8_acc "
            "drop_pts") in done.stdout
    assert "run 2/2: convnet_s@12" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert [row["resolution"] for row in results["rows"]] == [8, 12]
    for row in results["rows"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["teacher_agreement"] <= 1.0
        assert row["epoch_seconds"] > 0
        tflite = out / f"student_{row['resolution']}_int8.tflite"
        assert row["tflite_path"] == str(tflite) and row["tflite_bytes"] == tflite.stat().st_size
        assert row["quantization_drop_points"] == pytest.approx(
            100 * (row["test_accuracy"] - row["tflite_accuracy"]), abs=1e-6)
    assert 0.0 <= results["teacher_accuracy"] <= 1.0  # 8 steps: plumbing, not accuracy
    assert (out / "teacher.keras").exists() and (out / "student_12.keras").exists()
    assert results["flags"]["limit"] == 512


def test_bad_resolutions_are_refused_before_any_training():
    with pytest.raises(app.UsageError, match="--resolutions must be comma-separated integers, "
                                             "got '32,4x'; e.g. --resolutions=32,48,64"):
        common.parse_sizes(["32", "4x"], "mobilenetv3_small", "--resolutions")
    with pytest.raises(app.UsageError, match=r"mobilenetv3_small needs sides of at least 32; "
                                             r"drop \[16\]"):
        common.parse_sizes(["16", "32"], "mobilenetv3_small", "--resolutions")
    assert common.parse_sizes(["32", "48"], "mobilenetv3_small", "--resolutions") == [32, 48]
