"""The benchmark harness (benchmarks/timing.py, benchmarks/run.py), without running benchmarks."""

import json
import os
import sys
import uuid

import pytest

BENCHMARKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "benchmarks")
# benchmarks/ is a script folder, not a package: its modules import each other by bare name.
if BENCHMARKS_DIR not in sys.path:
    sys.path.insert(0, BENCHMARKS_DIR)

import run as bench_run  # noqa: E402
import timing  # noqa: E402


class FakeClock:
    """Stands in for time.perf_counter; fake benchmark functions advance it by their cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def recorder(calls, name, clock=None, cost=0.0):
    def fn():
        calls.append(name)
        if clock is not None:
            clock.now += cost
        return name
    return fn


# ---- timing.py -----------------------------------------------------------------------------

def test_interleaved_rotates_the_start_of_each_round():
    calls = []
    fns = {n: recorder(calls, n) for n in "abc"}
    timing.interleaved(fns, rounds=4, warmup=1)
    warmup, rounds = calls[:3], [calls[3 + 3 * r: 6 + 3 * r] for r in range(4)]
    assert warmup == ["a", "b", "c"]
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_interleaved_records_seconds_per_call_and_skips_warmup(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    fns = {"slow": recorder(calls, "slow", clock, 2.0), "fast": recorder(calls, "fast", clock, 0.5)}
    seconds = timing.interleaved(fns, rounds=3, warmup=2)
    assert seconds == {"slow": [2.0, 2.0, 2.0], "fast": [0.5, 0.5, 0.5]}
    assert len(calls) == 2 * 2 + 2 * 3


def test_interleaved_values_collects_what_each_call_returns():
    counter = {"n": 0}

    def numbered():
        counter["n"] += 1
        return counter["n"]
    values = timing.interleaved_values({"x": numbered}, rounds=3, warmup=0)
    assert values == {"x": [1, 2, 3]}


@pytest.mark.parametrize("fns, rounds, warmup, message", [
    ({}, 3, 1, "non-empty dict"),
    ({"a": 1}, 3, 1, "not callable"),
    ({"a": print}, 0, 1, "rounds=0"),
    ({"a": print}, 2, -1, "warmup=-1"),
])
def test_interleaved_rejects_bad_arguments(fns, rounds, warmup, message):
    with pytest.raises(ValueError, match=message):
        timing.interleaved(fns, rounds=rounds, warmup=warmup)


def test_summary_keeps_raw_samples_rounded():
    s = timing.summary([3.0, 1.0, 2.0, 0.1234567891])
    assert (s["median_s"], s["min_s"], s["max_s"], s["rounds"]) == (1.5, 0.123457, 3.0, 4)
    assert s["samples_s"] == [3.0, 1.0, 2.0, 0.123457]
    assert timing.summary([0.0000123456789])["samples_s"] == [0.0000123457]  # sub-ms keeps digits


def test_ratio_is_the_median_of_per_round_ratios():
    a, b = [1.0, 2.0, 10.0], [1.0, 1.0, 20.0]  # per round: 1, 2, 0.5
    assert timing.ratio(a, b) == 1.0
    assert timing.ratio_of_medians(a, b) == 2.0  # what the per-round pairing avoids
    # A round slowed by drift for both candidates does not move the per-round ratio.
    assert timing.ratio([1.0, 5.0, 1.0], [2.0, 10.0, 2.0]) == 0.5


def test_ratio_needs_paired_rounds():
    with pytest.raises(ValueError, match="same rounds"):
        timing.ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        timing.ratio([], [])


def test_entry_targets_in_both_directions():
    low = timing.entry(1.02, 1.05, {"x": 1})
    assert low == {"value": 1.02, "target": "<= 1.05", "passed": True, "raw": {"x": 1},
                   "note": None}
    high = timing.entry(2, 3, {}, better="higher", note="n")
    assert (high["value"], high["target"], high["passed"], high["note"]) == (2.0, ">= 3", False,
                                                                             "n")
    table = timing.entry([{"model": "m", "ms": 1.0}], None, {})
    assert (table["target"], table["passed"]) == (None, None)


def test_entry_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'lower' or 'higher'"):
        timing.entry(1.0, 1.0, {}, better="faster")
    with pytest.raises(ValueError, match="target=None for tables"):
        timing.entry([{"a": 1}], 1.0, {})


# ---- run.py --------------------------------------------------------------------------------

RESULTS = {
    "host": {"processor": "Test CPU", "cpu_count": 2, "tensorflow": "2.21.0", "keras": "3.15.1",
             "commit": "abc123"},
    "kd_step_overhead": {**timing.entry(1.0312, 1.05, {}, note="KD over student."),
                         "benchmark": "kd_step", "measured_at": "2026-11-22T01:00:00+00:00"},
    "input_pipeline_ratio": {**timing.entry(2.5, 3, {}, better="higher"),
                             "benchmark": "input_pipeline",
                             "measured_at": "2026-11-23T01:00:00+00:00"},
    "int8_latency": {**timing.entry([{"model": "convnet_s", "threads": 1, "int8_ms": 0.0297}],
                                    None, {}),
                     "benchmark": "int8_latency", "measured_at": "2026-11-23T02:00:00+00:00"},
}


def test_markdown_table_rows_and_sub_tables():
    text = bench_run.markdown_table(RESULTS)
    lines = text.splitlines()
    assert lines[:2] == ["| key | value | target | pass |", "| --- | --- | --- | --- |"]
    assert "| `kd_step_overhead` | 1.03 | <= 1.05 | yes |" in lines
    assert "| `input_pipeline_ratio` | 2.50 | >= 3 | no |" in lines
    assert "| `int8_latency` | table below | — | — |" in lines
    assert "| model | threads | int8_ms |" in lines and "| convnet_s | 1 | 0.0297 |" in lines


def test_readme_block_replaces_only_between_markers():
    readme = ("# Title\n\n## Performance\n\n<!-- perf:start (generated) -->\nold table\n"
              "<!-- perf:end -->\n\n## Next\n")
    block = bench_run.readme_block(RESULTS)
    new = bench_run.replace_block(readme, block)
    assert new.startswith("# Title\n\n## Performance\n\n<!-- perf:start (generated) -->\n| key |")
    assert new.endswith("<!-- perf:end -->\n\n## Next\n") and "old table" not in new
    assert "2026-11-22 to 2026-11-23: Test CPU, 2 CPUs" in new and "`abc123`" in new
    assert "- `kd_step_overhead`: KD over student." in new
    assert bench_run.replace_block(new, block) == new  # re-running changes nothing


@pytest.mark.parametrize("readme", [
    "# Title\nno markers\n",
    "<!-- perf:end -->\n<!-- perf:start -->\n",
    "<!-- perf:start -->\n<!-- perf:end -->\n<!-- perf:start -->\n<!-- perf:end -->\n",
])
def test_readme_without_proper_markers_says_what_to_add(readme):
    with pytest.raises(ValueError, match="add both where the Performance table goes"):
        bench_run.replace_block(readme, "table")


def test_update_readme_names_the_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# no markers\n")
    with pytest.raises(ValueError, match=f"{path}: the README needs"):
        bench_run.update_readme(str(path), "table")


def _fake_module(folder, body):
    """A benchmark module with a unique name (sys.modules caches imports) in `folder`."""
    name = f"fake_bench_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(body)
    return name


GOOD_MODULE = """
import timing

def run(quick=False):
    return {"fake_ratio": timing.entry(0.9 if quick else 1.1, 1.0, {"quick": quick})}
"""


def test_a_missing_benchmark_is_reported_not_crashed(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    missing = f"no_such_benchmark_{uuid.uuid4().hex[:8]}"
    good = _fake_module(tmp_path, GOOD_MODULE)
    statuses, entries = bench_run.run_benchmarks([missing, good], quick=True)
    assert statuses == {missing: "not available", good: "ok"}
    assert f"{missing}: not available" in capsys.readouterr().out
    assert entries["fake_ratio"]["value"] == 0.9 and entries["fake_ratio"]["benchmark"] == good
    assert entries["fake_ratio"]["quick"] is True


def test_a_benchmark_missing_a_dependency_is_not_mistaken_for_absent(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _fake_module(tmp_path, "import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        bench_run.load_benchmark(name)


@pytest.mark.parametrize("body, message", [
    ("def run(quick=False):\n    raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
    ("def run(quick=False):\n    return {'k': 1.0}\n", "build each value with timing.entry"),
])
def test_a_failing_benchmark_is_reported_with_its_error(tmp_path, monkeypatch, body, message):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _fake_module(tmp_path, body)
    statuses, entries = bench_run.run_benchmarks([name])
    assert message in statuses[name] and statuses[name].startswith("failed") and not entries


def test_merge_keeps_other_benchmarks_and_drops_stale_keys():
    old = {"host": {"old": True},
           "a_key": {"value": 1, "benchmark": "kd_step"},
           "renamed_key": {"value": 2, "benchmark": "int8_latency"}}
    new = {"int8_latency": {"value": 3, "benchmark": "int8_latency"}}
    merged = bench_run.merge(old, new, ["int8_latency"], {"new": True})
    assert list(merged) == ["host", "a_key", "int8_latency"]
    assert merged["host"] == {"new": True}


def test_main_merges_into_results_and_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    good = _fake_module(tmp_path, GOOD_MODULE)
    missing = f"no_such_benchmark_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(bench_run, "BENCHMARKS", ["kd_step", good, missing])
    monkeypatch.setattr(bench_run, "host_info", lambda: {"processor": "Test CPU", "cpu_count": 2})
    output, readme = tmp_path / "results.json", tmp_path / "README.md"
    output.write_text(json.dumps({"kept": {"value": 5.0, "benchmark": "kd_step"}}))
    readme.write_text("intro\n<!-- perf:start -->\n<!-- perf:end -->\nrest\n")
    status = bench_run.main(["--only", good, missing, "--output", str(output),
                             "--readme", str(readme)])
    assert status == 0
    results = json.loads(output.read_text())
    assert list(results) == ["host", "kept", "fake_ratio"]
    assert results["fake_ratio"]["passed"] is False and results["fake_ratio"]["seconds"] >= 0
    assert "| `fake_ratio` | 1.10 | <= 1 | no |" in readme.read_text()
    assert f"Measured by `python benchmarks/run.py --only {good} {missing}`" in readme.read_text()
    out = capsys.readouterr().out
    assert f"{missing}: not available" in out and f"results: {output}" in out
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # atomic writes


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "unknown benchmark"),
    (["--quick", "--readme", "README.md"], "drop --readme"),
])
def test_bad_command_lines_say_what_to_do(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_run.parse_args(argv)
    assert message in capsys.readouterr().err


def test_quick_writes_nothing_unless_asked():
    assert bench_run.parse_args(["--quick"]).output is None
    assert bench_run.parse_args([]).output == bench_run.DEFAULT_OUTPUT
