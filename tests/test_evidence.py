"""tfkd.report.evidence: paired-seed effects, t intervals and verdicts for the paper's findings."""

import math
import statistics

import pytest

from tfkd import report
from tfkd.report import evidence
from tests.test_report import make_study


def run(student, mode, seed, acc, *, kind="cnn", resolution=32, params=1000, teacher="t",
        activation_kb=100.0, macs=1e6, ms=1.0):
    return {"run_id": f"{student}-r{resolution}-{mode}-s{seed}", "student": student,
            "kind": kind, "resolution": resolution, "mode": mode, "seed": seed,
            "teacher": None if mode == "scratch" else teacher, "test_accuracy": acc,
            "params": params, "rss_growth_mb": 5.0 * (-1) ** seed, "macs": macs,
            "activation_kb": None if mode == "scratch" else activation_kb,
            "bench": [{"target": "local", "threads": 1, "median_ms": ms}]}


def test_t_critical_matches_the_table_and_its_tail():
    assert evidence.t_critical(1) == 12.706 and evidence.t_critical(2) == 4.303
    assert evidence.t_critical(30) == 2.042
    assert evidence.t_critical(60) == pytest.approx(2.000, abs=1e-3)   # table value 2.000
    assert evidence.t_critical(120) == pytest.approx(1.980, abs=1e-3)  # table value 1.980
    with pytest.raises(ValueError, match="df must be >= 1"):
        evidence.t_critical(0)


def test_kd_against_scratch_is_a_paired_t_interval():
    kd = [0.86, 0.87, 0.88]
    scratch = [0.84, 0.86, 0.85]
    runs = [run("m", "kd", s, a) for s, a in enumerate(kd)]
    runs += [run("m", "scratch", s, a) for s, a in enumerate(scratch)]
    (found,) = evidence.kd_beats_scratch(runs)
    diffs = [100 * (k - s) for k, s in zip(kd, scratch)]  # 2, 1, 3 points
    half = 4.303 * statistics.stdev(diffs) / math.sqrt(3)
    assert found.seeds == 3 and found.effect == pytest.approx(2.0)
    assert (found.low, found.high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    assert found.low < 0 < found.high and found.verdict == evidence.UNDECIDED  # -0.48 .. 4.48
    tight = [run("m", "kd", s, a + 0.02) for s, a in enumerate(scratch)]
    (found,) = evidence.kd_beats_scratch(tight + runs[3:])
    assert found.effect == pytest.approx(2.0) and found.verdict == evidence.SUPPORTED
    worse = [run("m", "kd", s, a - 0.02 - 0.005 * s) for s, a in enumerate(scratch)]
    (found,) = evidence.kd_beats_scratch(worse + runs[3:])
    assert found.verdict == evidence.CONTRADICTED and found.high < 0


def test_one_seed_or_unpaired_seeds_give_no_verdict():
    runs = [run("m", "kd", 0, 0.9), run("m", "scratch", 0, 0.8)]
    (found,) = evidence.kd_beats_scratch(runs)
    assert found.seeds == 1 and found.effect == pytest.approx(10.0)
    assert found.low is None and found.verdict == evidence.UNDECIDED
    runs = [run("m", "kd", 0, 0.9), run("m", "kd", 1, 0.9), run("m", "scratch", 2, 0.8),
            run("m", "scratch", 3, 0.8)]
    (found,) = evidence.kd_beats_scratch(runs)
    assert found.seeds == 0 and found.effect is None


def test_each_recipe_checks_its_own_findings():
    seeds = (0, 1)
    sweep = [run("m", mode, s, 0.80 + 0.01 * r / 16 + 0.001 * s, resolution=r,
                 activation_kb=r * r / 64, macs=r * r * 1e3) for mode in ("kd", "scratch")
             for s in seeds for r in (16, 32)]
    checked = evidence.evidence("resolution_sweep", sweep)
    found = {e.finding: e for e in checked if "kd" in e.comparison}
    assert found["Higher resolution raises accuracy"].effect == pytest.approx(1.0)
    # Memory: the export's peak activations (training RSS growth, noise here, is not used);
    # scratch runs, never exported, make no memory claim.
    memory = found["Higher resolution raises memory"]
    assert memory.effect == pytest.approx(12.0) and memory.verdict == evidence.SUPPORTED
    assert "activations" in memory.unit
    assert [e.comparison for e in checked if "memory" in e.finding] == [memory.comparison]
    compute = found["Higher resolution raises compute"]
    assert compute.effect == pytest.approx((32 * 32 - 16 * 16) * 1e-3)
    assert compute.low == compute.high and compute.verdict == evidence.SUPPORTED
    pairing = [run(student, mode, s, acc + 0.002 * s, kind=kind)
               for student, kind, acc in (("cnn", "cnn", 0.80), ("vit", "vit", 0.78))
               for mode in ("kd", "scratch") for s in seeds]
    found = evidence.evidence("arch_pairing", pairing)
    cnn = [e for e in found if e.finding == "CNN students beat ViT students"]
    assert len(cnn) == 2 and all(e.effect == pytest.approx(2.0) for e in cnn)
    sizes = [run(student, "kd", s, acc, params=p, ms=ms)
             for student, p, acc, ms in (("small", 10, 0.80, 1.0), ("large", 100, 0.82, 3.0))
             for s in seeds]
    found = {e.finding: e for e in evidence.evidence("student_size", sizes)}
    assert found["Larger students are slower"].effect == pytest.approx(2.0)
    assert found["Larger students are more accurate"].comparison == "large − small, kd"
    tuned = [run("m", mode, s, acc + 0.001 * s) for mode, acc in (("kd", 0.80), ("kd+ft", 0.81))
             for s in seeds]
    (found,) = [e for e in evidence.evidence("finetune_after_kd", tuned)
                if e.finding == "Fine-tuning after KD helps"]
    assert found.effect == pytest.approx(1.0) and found.verdict == evidence.SUPPORTED


def test_the_report_has_a_findings_section(tmp_path):
    study = make_study(tmp_path)
    text = open(report.build(str(study))["report_md"]).read()
    section = text.split("## Findings")[1].split("## ")[0]
    assert "Student t interval" in section
    # mobilenetv3_small: KD 86.00/86.30, scratch 84.00/84.50 -> differences 2.0, 1.8 points.
    row = next(line for line in section.splitlines() if "mobilenetv3_small@32 kd" in line)
    half = 12.706 * statistics.stdev([2.0, 1.8]) / math.sqrt(2)
    assert f"+1.90 acc pts [{1.9 - half:+.2f}, {1.9 + half:+.2f}]" in row
    assert "**supported**" in row


def test_a_single_seed_section_says_how_to_get_verdicts():
    runs = [run("m", "kd", 0, 0.9), run("m", "scratch", 0, 0.8)]
    text = "\n".join(evidence.section("resolution_sweep", runs))
    assert "| 1 | +10.00 acc pts | **not enough evidence** |" in text
    assert "rerun the study with --seeds=0,1,2" in text
    assert "No finding" in "\n".join(evidence.section("resolution_sweep", runs[:1]))
