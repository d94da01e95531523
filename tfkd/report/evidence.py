"""The paper's findings checked against one study: effect sizes with confidence, and verdicts.

For each finding a recipe addresses, the report compares two sets of runs that differ in one
thing (KD against scratch, the highest resolution against the lowest, ...). Runs with the same
seed are paired: a recipe gives them the same data order, so pairing removes the variation that
the seed brings to both sides. The effect is the mean of the per-seed differences, with a
two-sided 95% Student t interval over the pairs (df = pairs - 1).

Verdict: "supported" when the whole interval lies on the side of zero the finding predicts,
"contradicted" when it lies on the other side, "not enough evidence" when it contains zero, and
always "not enough evidence" with fewer than two paired seeds (no interval can be formed; run
the study with --seeds=0,1,2). A quantity without seed-to-seed variation (MACs, parameters) has
a zero-width interval, so a single difference in it decides once two seeds agree.
"""

import dataclasses
import math
import statistics

from tfkd.recipes import modes
from tfkd.report import tables

METHOD = ("Paired by seed; effect = mean over seeds of the difference, with a two-sided 95% "
          "Student t interval (df = seeds − 1). Supported: the interval excludes zero on the "
          "predicted side; contradicted: on the other side; otherwise, or with one seed, not "
          "enough evidence.")
SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not enough evidence"
# Two-sided 95% critical values of Student's t for df = 1..30 (standard table values).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclasses.dataclass
class Evidence:
    """One comparison: `finding`, what was compared, and the paired-seed effect."""

    finding: str
    comparison: str
    unit: str
    seeds: int
    effect: float = None
    low: float = None
    high: float = None
    verdict: str = UNDECIDED


def t_critical(df):
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Beyond the table: the first Cornish-Fisher term, within 0.001 of the exact value.
    return 1.95996 + 2.37227 / df


def paired(finding, comparison, unit, left, right, value, expect=1):
    """The `Evidence` that `value(left run) - value(right run)` has the sign of `expect`.

    Args:
        left, right: {seed: [runs]}; each seed's value is the mean over its runs (e.g. over
            several students of one kind). Seeds present on one side only are left out.
        value: run -> number or None.
        expect: +1 when the finding predicts a positive difference, -1 a negative one.
    """
    diffs = []
    for seed in sorted(set(left) & set(right)):
        a, b = (_mean(value(r) for r in side[seed]) for side in (left, right))
        if a is not None and b is not None:
            diffs.append(a - b)
    evidence = Evidence(finding, comparison, unit, len(diffs))
    if not diffs:
        return evidence
    evidence.effect = statistics.fmean(diffs)
    if len(diffs) < 2:
        return evidence
    half = t_critical(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    evidence.low, evidence.high = evidence.effect - half, evidence.effect + half
    if expect * evidence.low > 0 and expect * evidence.high > 0:
        evidence.verdict = SUPPORTED
    elif expect * evidence.low < 0 and expect * evidence.high < 0:
        evidence.verdict = CONTRADICTED
    return evidence


def _mean(values):
    values = [v for v in map(tables.number, values) if v is not None]
    return statistics.fmean(values) if values else None


def _by_seed(runs):
    found = {}
    for run in runs:
        found.setdefault(run.get("seed"), []).append(run)
    return found


def _points(run):
    accuracy = tables.number(run.get("test_accuracy"))
    return None if accuracy is None else 100.0 * accuracy


def _latency(run):
    """The run's first local single-thread median latency in ms, else its first one."""
    bench = [b for b in run.get("bench") or [] if isinstance(b, dict)]
    local = [b for b in bench if b.get("target") == "local" and b.get("threads") == 1]
    chosen = (local or bench or [{}])[0]
    return chosen.get("median_ms")


def kd_beats_scratch(runs):
    """KD (every shipped mode) against scratch, per (student, resolution, teacher)."""
    found = []
    for student, resolution, mode, teacher, kd_runs, scratch_runs in tables.kd_gains(runs):
        who = f"{student}@{resolution} {mode}" + (f" from {teacher}" if teacher else "")
        found.append(paired("KD beats scratch", f"{who} − scratch", "acc pts",
                            _by_seed(kd_runs), _by_seed(scratch_runs), _points))
    return found


def cnn_beats_vit(runs):
    """CNN students against ViT students trained the same way (low-resource setting)."""
    found = []
    for (resolution, mode, teacher), group in _groups(runs, ("resolution", "mode",
                                                             "teacher")).items():
        cnn = [r for r in group if r.get("kind") == "cnn"]
        vit = [r for r in group if r.get("kind") == "vit"]
        if cnn and vit:
            who = f"{mode}" + (f" from {teacher}" if teacher else "") + f" @{resolution}"
            found.append(paired("CNN students beat ViT students", f"CNN − ViT, {who}",
                                "acc pts", _by_seed(cnn), _by_seed(vit), _points))
    return found


def larger_is_better_and_slower(runs):
    """The largest student against the smallest of each mode: accuracy up, latency up."""
    found = []
    for (resolution, mode), group in _groups(runs, ("resolution", "mode")).items():
        sizes = sorted({r.get("params") for r in group if tables.number(r.get("params"))})
        if len(sizes) < 2:
            continue
        large = [r for r in group if r.get("params") == sizes[-1]]
        small = [r for r in group if r.get("params") == sizes[0]]
        who = f"{large[0].get('student')} − {small[0].get('student')}, {mode}"
        found.append(paired("Larger students are more accurate", who, "acc pts",
                            _by_seed(large), _by_seed(small), _points))
        found.append(paired("Larger students are slower", who, "ms", _by_seed(large),
                            _by_seed(small), _latency))
    return found


def resolution_costs_and_pays(runs):
    """The highest resolution against the lowest, per (student, mode): accuracy, memory and
    compute all rise."""
    found = []
    for (student, mode), group in _groups(runs, ("student", "mode")).items():
        sides = sorted({r.get("resolution") for r in group if tables.number(r.get("resolution"))})
        if len(sides) < 2:
            continue
        high = _by_seed(r for r in group if r.get("resolution") == sides[-1])
        low = _by_seed(r for r in group if r.get("resolution") == sides[0])
        who = f"{student} {mode}, {sides[-1]} px − {sides[0]} px"
        found.append(paired("Higher resolution raises accuracy", who, "acc pts", high, low,
                            _points))
        # The exported model's peak activation memory: the memory that the resolution
        # drives, read from the file. Training RSS says little: it accumulates over the runs
        # of one process, and its growth during a run is the allocator's, not the model's.
        if any(tables.number(r.get("activation_kb")) for r in group):
            found.append(paired("Higher resolution raises memory", who,
                                "KB peak activations (exported)", high, low,
                                lambda r: r.get("activation_kb")))
        found.append(paired("Higher resolution raises compute", who, "MMACs", high, low,
                            lambda r: (tables.number(r.get("macs")) or 0) / 1e6 or None))
    return found


def finetune_helps(runs):
    """kd+ft (KD, then labels) against kd for as many epochs in total, per student."""
    found = []
    for (student, resolution), group in _groups(runs, ("student", "resolution")).items():
        tuned = [r for r in group if r.get("mode") == modes.KD_FT]
        kd = [r for r in group if r.get("mode") == modes.KD]
        if tuned and kd:
            found.append(paired("Fine-tuning after KD helps", f"{student}@{resolution} kd+ft − kd",
                                "acc pts", _by_seed(tuned), _by_seed(kd), _points))
    return found


def _groups(runs, fields):
    found = {}
    for run in runs:
        found.setdefault(tuple(run.get(f) for f in fields), []).append(run)
    return found


# The findings each recipe addresses; every study also checks KD against scratch.
FINDINGS = {"resolution_sweep": (resolution_costs_and_pays,),
            "arch_pairing": (cnn_beats_vit,),
            "student_size": (larger_is_better_and_slower,),
            "finetune_after_kd": (finetune_helps,)}


def evidence(recipe, runs):
    """Every `Evidence` for a study of `recipe` made of `runs` (metrics dicts)."""
    found = kd_beats_scratch(runs)
    for check in FINDINGS.get(recipe, ()):
        found += check(runs)
    return found


def section(recipe, runs):
    """The report's "Findings" section (Markdown lines)."""
    found = evidence(recipe, runs)
    lines = ["", "## Findings", ""]
    if not found:
        return lines + ["No finding of the paper can be checked with these runs."]
    rows = [[e.finding, e.comparison, e.seeds, _effect_text(e), f"**{e.verdict}**"]
            for e in found]
    lines += [METHOD, "", tables.md_table(
        ["Finding", "Comparison", "Seeds", "Effect (95% CI)", "Verdict"], rows)]
    if any(e.seeds < 2 for e in found):
        lines += ["", "A comparison over fewer than two seeds has no interval and no verdict: "
                  "rerun the study with --seeds=0,1,2 (finished runs are kept)."]
    return lines


def _effect_text(e):
    if e.effect is None:
        return tables.DASH
    text = f"{e.effect:+.2f} {e.unit}"
    if e.low is not None:
        text += f" [{e.low:+.2f}, {e.high:+.2f}]"
    return text
