"""budget_search: latency before training, successive halving, the winner, resume, errors."""

import json
import math
import os
import subprocess
import sys

import pytest

import tfkd
from tests.test_android_bench import Phone
from tfkd.recipes import budget_search, engine, folder
from tfkd.recipes.config import ConfigError

# budget_s: the last candidate left trains on while the budget lasts; a few seconds here.
TINY = dict(teacher="convnet_s", teacher_size=16, data_size=16, limit=256, teacher_limit=256,
            test_limit=128, batch_size=64, teacher_epochs=1, verbose=0, budget_s=10)


def test_a_search_drops_slow_candidates_untrained_and_ships_a_winner_within_budget(tmp_path,
                                                                                  capsys):
    config = budget_search.Config(
        students=("convnet_s", "mobilenetv3_small", "deit_micro"), resolutions=(16, 32),
        quantizations=("int8",), latency_ms=0.5, output_dir=str(tmp_path),
        **dict(TINY, budget_s=120))
    summary = budget_search.run(config)
    study = tmp_path / "budget_search" / "default"
    names = [c["candidate"] for c in summary["candidates"]]
    assert names == ["convnet_s-r16-int8", "convnet_s-r32-int8", "mobilenetv3_small-r32-int8",
                     "deit_micro-r16-int8", "deit_micro-r32-int8"]  # mobilenet needs >= 32 px
    assert "mobilenetv3_small needs sides >= 32; skipping [16]" in capsys.readouterr().out
    for c in summary["candidates"]:  # each one really timed, from its own exported file
        assert (study / "latency" / f"{c['candidate']}.tflite").exists() and c["median_ms"] > 0
    slow = {c["student"] for c in summary["candidates"] if c["median_ms"] > 0.5}
    assert "deit_micro" in slow  # ~2 ms here: over the budget
    trained = os.listdir(study / "runs")
    assert not any(run.startswith(tuple(slow)) for run in trained)  # never trained
    first, second = summary["rounds"][:2]
    assert first["epochs"] == 1 and len(first["results"]) == 3
    assert second["epochs"] == 3 and len(second["results"]) == 1  # the best third, 3x longer
    best = max(first["results"], key=lambda r: r["accuracy"])
    assert (second["results"][0]["student"], second["results"][0]["resolution"]) == (
        best["student"], best["resolution"])
    # Ranked after recomputing each student's BatchNorm statistics (on by default here).
    metrics = json.loads((study / "runs" / first["results"][0]["run_id"] / "metrics.json")
                         .read_text())
    assert "accuracy_before_bn_recalibration" in metrics
    assert first["results"][0]["accuracy"] == metrics["test_accuracy"]
    winner = summary["winner"]  # the best of round 1, trained on while the budget lasted
    assert {r["results"][0]["run_id"].split("-round")[0] for r in summary["rounds"][1:]} == {
        second["results"][0]["run_id"].split("-round")[0]}
    assert winner["run_id"] == summary["rounds"][-1]["results"][0]["run_id"]
    assert winner["within_budget"] and winner["retimed_ms"] <= 0.5
    assert os.path.exists(winner["path"])
    assert sum(p["pareto"] for p in summary["pareto"]) >= 1
    text = (study / "search.md").read_text()
    for heading in ("## Latency", "## Rounds", "## Accuracy against measured latency",
                    "## Winner"):
        assert heading in text
    assert "| deit_micro-r32-int8 |" in text and "| no |" in text
    assert (study / "plots" / "budget_search.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((study / "search.json").read_text())["winner"]["run_id"] == \
        winner["run_id"]
    # The same command resumes: nothing is trained or timed again, and it decides the same.
    again = budget_search.run(config)
    out = capsys.readouterr().out
    runs = sum(len(r["results"]) for r in summary["rounds"])
    assert "latency convnet_s" not in out and out.count("skipped, already complete") == runs
    assert again["rounds"] == summary["rounds"] and again["winner"]["run_id"] == \
        winner["run_id"]


def _fake_rows(study, accuracy, seconds):
    """engine.run_study that records each run as finished without training it."""
    def run_study(recipe, config, runs, format_table):
        return [study.finish(spec.run_id, {
            "student": spec.student, "resolution": spec.resolution,
            "test_accuracy": accuracy[spec.student], "train_seconds": seconds * spec.epochs,
            "epoch_seconds": seconds}) for spec in runs]
    return run_study


def test_halving_keeps_the_best_third_and_stops_before_overrunning_the_budget(monkeypatch,
                                                                               tmp_path):
    accuracy = {f"s{i}": 0.5 + 0.01 * i for i in range(9)}
    study = folder.StudyFolder(str(tmp_path))
    monkeypatch.setattr(engine, "run_study", _fake_rows(study, accuracy, seconds=10.0))
    pairs = [(name, 32) for name in accuracy]
    rounds = budget_search.halving(budget_search.Config(budget_s=1000), study, pairs)
    # 9 x 1 epoch, 3 x 2 more, then the last one alone 6, 18 and 54 more epochs (930 s in
    # all) until 162 more (1,620 s) would overrun the 1,000 s.
    assert [r["epochs"] for r in rounds] == [1, 3, 9, 27, 81]
    assert [len(r["results"]) for r in rounds] == [9, 3, 1, 1, 1]
    assert [r["student"] for r in rounds[1]["results"]] == ["s8", "s7", "s6"]
    assert {r["results"][0]["student"] for r in rounds[2:]} == {"s8"}
    assert rounds[-1]["spent_s"] == 930 and "162 more epochs for 1" in rounds[-1]["stopped"]
    # 9 x 10 s spent; round 1 would add 3 x 2 epochs x 10 s = 60 s: over a 100 s budget.
    study = folder.StudyFolder(str(tmp_path / "again"))
    monkeypatch.setattr(engine, "run_study", _fake_rows(study, accuracy, seconds=10.0))
    rounds = budget_search.halving(budget_search.Config(budget_s=100), study, pairs)
    assert len(rounds) == 1 and "the next round (2 more epochs for 3) would take ~60 s" in \
        rounds[0]["stopped"]


def test_the_latency_model_fits_a_power_law_and_reports_its_error():
    rows = [{"candidate": f"c{i}", "macs": macs, "params": params, "kind": kind,
             "quantization": "int8", "median_ms": 1e-6 * macs ** 0.9 * params ** 0.1 *
             (2.0 if kind == "vit" else 1.0)}
            for i, (macs, params, kind) in enumerate(
                [(1e6, 1e4, "cnn"), (4e6, 2e4, "cnn"), (9e6, 1e5, "vit"), (2e7, 3e5, "cnn"),
                 (5e7, 1e6, "vit"), (1e8, 2e6, "cnn"), (3e8, 5e5, "vit"), (6e8, 4e6, "cnn")])]
    model = budget_search.fit_latency_model(rows)
    assert model["coefficients"]["log_macs"] == pytest.approx(0.9, abs=1e-3)
    assert model["coefficients"]["vit"] == pytest.approx(math.log(2.0), abs=1e-3)
    assert model["loo_max_abs_pct"] < 0.1
    assert "no model fitted (it needs 8)" in budget_search.fit_latency_model(rows[:5])["note"]


def test_bad_settings_are_refused_before_any_work(tmp_path):
    cases = [(dict(targets=("local", "adb")), "one target, one thread count and one delegate"),
             (dict(quantizations=("int4",)), "quantizations=int4: choose from int8"),
             (dict(latency_ms=0), "pass a latency and a budget > 0"),
             (dict(eta=1), "eta >= 2"),
             (dict(seeds=(0, 1)), "seeds=0,1: the search trains each candidate once"),
             (dict(bench_options=("config_file",)), "'config_file' is not KEY=VALUE"),
             (dict(bench_options=("password=x",)), "unknown option 'password'; choose from"),
             (dict(bench_options=("config_file=/x",)),
              "config_file is for ssh targets and targets=local names none"),
             (dict(targets=("ssh:pi@board",), bench_options=("connect_timeout_s=soon",)),
              "connect_timeout_s='soon'; pass seconds"),
             (dict(students=("mobilenetv3_small",), resolutions=(16,)),
              "mobilenetv3_small needs sides of at least 32"),
             (dict(quantization="int8"), "quantization='int8'; choose one of none"),
             (dict(recalibrate_bn_batches=-1), "recalibrate_bn_batches=-1; pass 0 \\(off\\)")]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            budget_search.run(budget_search.Config(output_dir=str(tmp_path), **fields))
    assert not os.listdir(tmp_path)
    assert tfkd.recipes.budget_search.Config.FLAG_ALIASES["target"] == "targets"


def test_on_a_phone_candidates_are_timed_over_adb_and_the_slow_one_never_trains(
        tmp_path, monkeypatch):
    """The adb double's benchmark_model takes 20 us per kB of model: MobileNetV3 (~1 MB in
    int8) misses a 2 ms budget that the small CNN meets."""
    phone = Phone(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_BENCH_US_PER_KB", "20")
    config = budget_search.Config(
        students=("convnet_s", "mobilenetv3_small"), resolutions=(32,), quantizations=("int8",),
        latency_ms=2.0, targets=("adb",), bench_options=(f"benchmark_binary={phone.binary}",),
        output_dir=str(tmp_path / "runs"), **TINY)
    summary = budget_search.run(config)
    for c in summary["candidates"]:  # what the phone's tool reported for that very file
        assert c["median_ms"] == pytest.approx(c["size_bytes"] * 20 // 1024 / 1000)
    fits = {c["student"]: c["median_ms"] <= 2.0 for c in summary["candidates"]}
    assert fits == {"convnet_s": True, "mobilenetv3_small": False}
    assert [r["student"] for r in summary["rounds"][0]["results"]] == ["convnet_s"]
    winner = summary["winner"]
    assert winner["candidate"] == "convnet_s-r32-int8" and winner["within_budget"]
    graphs = [a for run in phone.bench_calls() for a in run if a.startswith("--graph=")]
    assert len(graphs) == 3  # two candidates, then the winner timed again
    assert phone.remote_runs() == []  # every run folder removed from the phone


def test_on_a_board_candidates_are_timed_over_ssh_with_the_given_options(server, tmp_path):
    options = server.client_options()
    config = budget_search.Config(
        students=("convnet_s",), resolutions=(16,), quantizations=("int8", "float32"),
        latency_ms=50.0, targets=(server.target(),), bench_threads=(1,),
        bench_options=(f"identity_file={options['identity_file']}", "config_file=/dev/null",
                       *(f"ssh_options={o}" for o in options["ssh_options"]),
                       f"python={sys.executable}", "connect_timeout_s=20"),
        output_dir=str(tmp_path), **TINY)
    summary = budget_search.run(config)
    assert [c["candidate"] for c in summary["candidates"]] == ["convnet_s-r16-int8",
                                                               "convnet_s-r16-float32"]
    assert all(0 < c["median_ms"] < 50 for c in summary["candidates"])
    assert summary["winner"]["within_budget"] and summary["target"] == server.target()


def test_two_shards_share_the_folder_and_split_every_round(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(budget_search, "POLL_S", 0.2)
    flags = dict(students=("convnet_s",), resolutions=(16, 24), quantizations=("int8",),
                 latency_ms=50.0, eta=2, targets=("local",), bench_threads=(1,),
                 output_dir=str(tmp_path), num_shards=2, **TINY)
    command = [sys.executable, "-m", "tfkd.recipes.budget_search", "--shard_index=1"] + [
        f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in flags.items()]
    other = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        summary = budget_search.run(budget_search.Config(shard_index=0, **flags))
        out_other, _ = other.communicate(timeout=600)
    finally:
        other.kill()
    assert other.returncode == 0, out_other[-3000:]
    out = capsys.readouterr().out
    # Shard 0 timed both candidates; shard 1 read its files (waiting for them if it got there
    # first).
    assert "latency convnet_s-r16-int8" in out and "latency convnet_s" not in out_other
    assert "shard 0 of 2: 1 of 2 runs" in out and "shard 1 of 2: 1 of 2 runs" in out_other
    assert "shard 0 ships the winner" in out_other
    first, second = summary["rounds"][:2]
    assert len(first["results"]) == 2 and second["epochs"] == 2
    best = max(first["results"], key=lambda r: r["accuracy"])
    assert second["results"][0]["resolution"] == best["resolution"]
    assert summary["winner"]["run_id"] == summary["rounds"][-1]["results"][0]["run_id"]


def test_a_shard_alone_says_the_shards_must_share_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(budget_search, "POLL_S", 0.05)
    monkeypatch.setattr(budget_search, "STALL_S", 0.3)
    config = budget_search.Config(students=("convnet_s",), resolutions=(16,),
                                  quantizations=("int8",), shard_index=1, num_shards=2,
                                  output_dir=str(tmp_path), **TINY)
    with pytest.raises(RuntimeError, match="no new candidate latencies timed by shard 0 for 0 "
                       "s; still missing convnet_s-r16-int8.json. The shards of a search share "
                       "one study folder"):
        budget_search.run(config)
