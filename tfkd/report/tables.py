"""results.csv and report.md from a loaded `Study`; pure functions of the run metrics.

Runs are grouped by configuration (student, resolution, mode, teacher); the seeds of a group are
its repeats. Accuracies appear as percentages with two decimals, ± is the sample standard
deviation over seeds (ddof=1), and "—" stands for a number that is missing or undefined.
"""

import csv
import math
import numbers
import os
import statistics

from tfkd.recipes import modes

# results.csv starts with these, in this order; quantization and latency columns follow.
BASE_COLUMNS = ("run_id", "recipe", "student", "family", "kind", "params", "resolution", "mode",
                "seed", "teacher", "teacher_kind", "epochs_run", "test_accuracy", "best_accuracy",
                "best_epoch", "last_accuracy", "teacher_agreement", "train_seconds",
                "peak_rss_mb", "activation_kb", "macs")
QUANT_FIELDS = ("bytes", "accuracy", "drop_points")
# Flags shown in the configuration table when present; list-valued flags (a recipe's axes:
# students, resolutions, ...) are shown too, whatever their name.
KEY_FLAGS = ("dataset", "data_size", "teacher", "teacher_size", "teacher_epochs", "epochs",
             "batch_size", "learning_rate", "limit", "test_limit", "temperature",
             "student_loss_weight", "quantization", "max_quantization_drop")
DASH = "—"


def number(value):
    """`value` as a finite float, or None (missing, null, text, bool, NaN)."""
    # numbers.Real admits numpy scalars too; bool is a Real but never a measurement.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def sort_key(value):
    """Orders None last and mixed types without raising."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def tflite_entries(run):
    """The run's {quantization: export record}, ignoring malformed entries."""
    tflite = run.get("tflite")
    if not isinstance(tflite, dict):
        return {}
    return {q: t for q, t in tflite.items() if isinstance(t, dict)}


def quantizations(runs):
    """The quantizations exported in any run, sorted."""
    return sorted({q for run in runs for q in tflite_entries(run)})


def _benchmarked_variant(run, entry):
    """The quantization whose .tflite `entry` timed (matched on file name), else the stem."""
    name = os.path.basename(str(entry.get("model_path") or ""))
    for q, record in tflite_entries(run).items():
        if name and os.path.basename(str(record.get("path") or "")) == name:
            return q
    return os.path.splitext(name)[0] or "model"


def bench_points(runs):
    """Every timed benchmark as (run, key, entry), key = (target, threads, variant).

    variant is None unless some run has two results for one (target, threads), e.g. both its
    int8 and float16 models; then every key names the model (its quantization), so that
    columns stay comparable across runs. Results without a median are left out.
    """
    raw = []
    for run in runs:
        bench = run.get("bench") if isinstance(run.get("bench"), list) else []
        for entry in bench:
            if isinstance(entry, dict) and number(entry.get("median_ms")) is not None:
                threads = entry.get("threads")
                raw.append((run, (str(entry.get("target") or "local"), threads), entry))
    seen = [(run["run_id"], key) for run, key, _ in raw]
    need_variant = len(seen) != len(set(seen))
    return [(run, (*key, _benchmarked_variant(run, entry) if need_variant else None), entry)
            for run, key, entry in raw]


def bench_keys(points):
    """The distinct keys of `bench_points`, local first, then by target, threads, variant."""
    keys = {key for _, key, _ in points}
    return sorted(keys, key=lambda k: (k[0] != "local", k[0], sort_key(k[1]), str(k[2])))


def _threads_label(threads):
    return f"t{threads}" if threads is not None else "tdefault"


def latency_column(key):
    """The results.csv column of a bench key, e.g. "latency_ms[local,t1]"."""
    target, threads, variant = key
    parts = [target, _threads_label(threads)] + ([variant] if variant else [])
    return f"latency_ms[{','.join(parts)}]"


def latency_label(key):
    """A short table header for a bench key, e.g. "local t1 ms"."""
    target, threads, variant = key
    return " ".join([target, _threads_label(threads)] + ([variant] if variant else []) + ["ms"])


def benchmarked_accuracy(run, entry):
    """Accuracy of the model a bench entry timed: its .tflite's when known, else the Keras one.

    An int8 model's latency belongs with the int8 model's accuracy, not the float model's.
    """
    variant = _benchmarked_variant(run, entry)
    record = tflite_entries(run).get(variant, {})
    accuracy = number(record.get("accuracy"))
    return accuracy if accuracy is not None else number(run.get("test_accuracy"))


def _latencies(run, points):
    """{bench key: median ms} for one run; the first result wins if a key repeats."""
    found = {}
    for other, key, entry in points:
        if other is run:
            found.setdefault(key, number(entry.get("median_ms")))
    return found


def results_table(study):
    """(columns, rows) of results.csv: one row (a list) per complete run, sorted by run_id."""
    quants = quantizations(study.runs)
    points = bench_points(study.runs)
    keys = bench_keys(points)
    columns = list(BASE_COLUMNS)
    columns += [f"{q}_{field}" for q in quants for field in QUANT_FIELDS]
    columns += [latency_column(key) for key in keys]
    rows = []
    for run in study.runs:
        # A run that does not name its recipe belongs to the study's.
        row = [run.get(name) for name in BASE_COLUMNS]
        row[1] = row[1] if row[1] is not None else study.config.get("recipe")
        tflite = tflite_entries(run)
        row += [tflite.get(q, {}).get(field) for q in quants for field in QUANT_FIELDS]
        latencies = _latencies(run, points)
        row += [latencies.get(key) for key in keys]
        rows.append([_csv_cell(value) for value in row])
    return columns, rows


def _csv_cell(value):
    # Empty for missing values so spreadsheets see a blank, not the text "None".
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def write_results_csv(study, f):
    """Writes results.csv to the open text file `f` (opened with newline="")."""
    columns, rows = results_table(study)
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def group_runs(runs):
    """{(student, resolution, mode, teacher): [runs]}, in a stable, readable order."""
    groups = {}
    for run in runs:
        key = tuple(run.get(name) for name in ("student", "resolution", "mode", "teacher"))
        groups.setdefault(key, []).append(run)

    def order(key):
        student, resolution, mode, teacher = key
        return (sort_key(student), sort_key(resolution), modes.order(mode),
                sort_key(mode), sort_key(teacher))
    return {key: groups[key] for key in sorted(groups, key=order)}


def mean_std(values):
    """(mean, sample std with ddof=1) of the non-missing values; None where undefined."""
    values = [v for v in map(number, values) if v is not None]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def fmt(value, scale=1.0, digits=2, sign=False):
    """A number for a table, "—" when missing."""
    value = number(value)
    if value is None:
        return DASH
    return f"{value * scale:{'+' if sign else ''}.{digits}f}"


def fmt_mean_std(mean, std, scale=100.0, sign=False):
    """"86.15 ± 0.21" in percent by default; "86.15 ± —" with a single seed."""
    if mean is None:
        return DASH
    return f"{fmt(mean, scale, sign=sign)} ± {fmt(std, scale)}"


def md_table(header, rows):
    """A Markdown table; "|" in cells is escaped so it cannot split a column."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def _group_row(key, runs, quants, keys, points):
    """One row of the per-configuration table."""
    student, resolution, mode, teacher = key
    row = [student or DASH, resolution if resolution is not None else DASH, mode or DASH,
           teacher or DASH, len(runs),
           fmt_mean_std(*mean_std(r.get("test_accuracy") for r in runs)),
           fmt(mean_std(r.get("best_accuracy") for r in runs)[0], 100),
           fmt(mean_std(r.get("last_accuracy") for r in runs)[0], 100),
           _params(runs)]
    for q in quants:
        records = [tflite_entries(r).get(q, {}) for r in runs]
        row += [fmt(mean_std(t.get("bytes") for t in records)[0], 1e-3, 1),
                fmt(mean_std(t.get("accuracy") for t in records)[0], 100),
                fmt(mean_std(t.get("drop_points") for t in records)[0])]
    latencies = [_latencies(r, points) for r in runs]
    row += [fmt(mean_std(lat.get(k) for lat in latencies)[0]) for k in keys]
    row.append(fmt(mean_std(r.get("activation_kb") for r in runs)[0], digits=1))
    row.append(fmt(mean_std(r.get("peak_rss_mb") for r in runs)[0], digits=0))
    return row


def _params(runs):
    params = [number(r.get("params")) for r in runs]
    params = [p for p in params if p is not None]
    return f"{int(params[0]):,}" if params else DASH


def configuration_table(runs):
    """The Markdown table of every configuration, aggregated over seeds."""
    quants = quantizations(runs)
    points = bench_points(runs)
    keys = bench_keys(points)
    header = ["Student", "Res", "Mode", "Teacher", "n", "Test acc %", "Best-epoch acc %",
              "Last-epoch acc %", "Params"]
    header += [h for q in quants for h in (f"{q} kB", f"{q} acc %", f"{q} drop pts")]
    header += [latency_label(k) for k in keys] + ["Peak activations kB", "Peak RSS MB"]
    rows = [_group_row(key, group, quants, keys, points)
            for key, group in group_runs(runs).items()]
    return md_table(header, rows)


def kd_gains(runs):
    """[(student, resolution, mode, teacher, kd runs, scratch runs)] for every distilled
    configuration whose (student, resolution) was also trained from scratch.

    Scratch runs are pooled over the teacher field: they never saw a teacher.
    """
    groups = group_runs(runs)
    scratch = {}
    for (student, resolution, mode, _), group in groups.items():
        if mode == modes.SCRATCH:
            scratch.setdefault((student, resolution), []).extend(group)
    return [(*key, group, scratch[key[:2]]) for key, group in groups.items()
            if key[2] in modes.SHIPPED and key[:2] in scratch]


def gain(kd_runs, scratch_runs):
    """(gain in accuracy points, combined std in points or None).

    The combined std is sqrt(std_kd² + std_scratch²), defined only when both sides have
    more than one seed.
    """
    kd_mean, kd_std = mean_std(r.get("test_accuracy") for r in kd_runs)
    sc_mean, sc_std = mean_std(r.get("test_accuracy") for r in scratch_runs)
    if kd_mean is None or sc_mean is None:
        return None, None
    std = math.hypot(kd_std, sc_std) if kd_std is not None and sc_std is not None else None
    return 100.0 * (kd_mean - sc_mean), None if std is None else 100.0 * std


def gain_section(runs):
    """The "KD gain over scratch" section."""
    lines = ["## KD gain over scratch", ""]
    found = kd_gains(runs)
    if not found:
        return lines + ["No (student, resolution) was trained both with KD and from scratch."]
    lines += ["Gain = 100 × (mean KD test accuracy − mean scratch test accuracy), in points; "
              "± is sqrt(std_kd² + std_scratch²) in points (— with a single seed).", ""]
    rows = []
    for student, resolution, mode, teacher, kd_runs, scratch_runs in found:
        points, std = gain(kd_runs, scratch_runs)
        rows.append([student, resolution, mode, teacher or DASH, len(kd_runs),
                     len(scratch_runs),
                     fmt_mean_std(*mean_std(r.get("test_accuracy") for r in kd_runs)),
                     fmt_mean_std(*mean_std(r.get("test_accuracy") for r in scratch_runs)),
                     fmt_mean_std(points, std, scale=1.0, sign=True)])
    header = ["Student", "Res", "Mode", "Teacher", "n KD", "n scratch", "KD acc %",
              "Scratch acc %", "Gain pts"]
    return lines + [md_table(header, rows)]


def export_choice_section(runs):
    """The "Export choice" section of runs exported with quantization="auto" (else nothing)."""
    chosen = [(run.get("run_id") or DASH, record) for run in runs
              for q, record in tflite_entries(run).items() if q == "auto"]
    if not chosen:
        return []
    lines = ["", "## Export choice", "",
             "`--quantization=auto`: every candidate exported, evaluated and timed; the fastest "
             "within the drop budget wins.", ""]
    for run_id, record in chosen:
        lines.append(f"- `{run_id}`: **{record.get('chosen') or DASH}**: "
                     f"{record.get('reason') or DASH}")
        rows = [[c.get("name"), fmt(c.get("accuracy"), 100), fmt(c.get("drop_points")),
                 fmt(c.get("size_bytes"), 1e-3, 1), fmt(c.get("median_ms"), 1.0, 3),
                 "yes" if c.get("passed") else "no"]
                for c in record.get("candidates") or []]
        if rows:
            lines += ["", md_table(["Candidate", "Acc %", "Drop pts", "kB", "ms", "Within"],
                                   rows), ""]
    return lines


def _value_text(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return DASH if value is None else str(value)


def config_section(study):
    """Title and configuration summary."""
    config = study.config
    flags = config.get("flags") if isinstance(config.get("flags"), dict) else {}
    versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
    recipe, name = config.get("recipe") or DASH, config.get("name") or DASH
    commit = config.get("git_commit")
    lines = [f"# {recipe} / {name}", "",
             "Rebuilt from this folder's files by `python -m tfkd.report`; edits are lost on "
             "the next rebuild.", "", "## Configuration", "",
             f"- Created: {config.get('created') or DASH}",
             f"- Seeds: {_value_text(config.get('seeds'))}",
             f"- Git commit: `{commit}`" if commit else "- Git commit: unknown",
             "- Versions: " + (", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
                               or DASH),
             f"- Runs: {len(study.runs)} complete, {len(study.skipped)} skipped"]
    sources = getattr(study, "sources", None) or []
    if len(sources) > 1:  # shards merged: say which folder gave which runs
        lines[2] = ("Rebuilt by `python -m tfkd.report` from the files of the folders below "
                    "(the shards of one study); edits are lost on the next rebuild.")
        lines += [f"- Merged from: `{folder}` ({count} run{'' if count == 1 else 's'})"
                  for folder, count in sources]
    lines += [f"- Teacher: {t}" for t in _teachers(study.runs)]
    shown = [k for k in flags if k in KEY_FLAGS or isinstance(flags[k], list)]
    shown.sort(key=lambda k: (KEY_FLAGS.index(k) if k in KEY_FLAGS else len(KEY_FLAGS), k))
    if shown:
        lines += ["", md_table(["Flag", "Value"],
                               [[f"`{k}`", _value_text(flags[k])] for k in shown])]
    if flags:
        lines += ["", "<details><summary>All flags</summary>", ""]
        lines += [f"- `{k}`: {_value_text(flags[k])}" for k in sorted(flags)] + ["", "</details>"]
    return lines


def _teachers(runs):
    found = {}
    for run in runs:
        if run.get("teacher") and run.get("mode") != modes.SCRATCH:
            found.setdefault(run["teacher"], run)
    return [f"{name} ({run.get('teacher_kind') or DASH}, {run.get('teacher_resolution') or DASH}"
            f" px, test accuracy {fmt(run.get('teacher_accuracy'), 100)} %)"
            for name, run in sorted(found.items())]


def report_markdown(study, notes, findings=()):
    """The whole report.md.

    Args:
        study: a loaded `Study`.
        notes: plot name -> a sentence about what the plot could not show, or None.
        findings: the lines of the "Findings" section (`tfkd.report.evidence.section`).
    """
    lines = config_section(study)
    lines += ["", "## Results by configuration", "",
              "Mean over seeds; test accuracy ± sample std (ddof=1; — with one seed). "
              "Best-epoch and last-epoch accuracies are the means of the best and the final "
              "validation accuracy of training. Latency: each run's median, averaged over seeds. "
              "Sizes in kB (1000 bytes).", "", configuration_table(study.runs), ""]
    lines += gain_section(study.runs) + list(findings) + export_choice_section(study.runs)
    lines += ["", "## Plots", ""]
    for name in notes:
        lines.append(f"![{name.replace('_', ' ')}](plots/{name}.png)")
        lines += [f"*{notes[name]}*", ""] if notes[name] else [""]
    lines += ["## Skipped runs", ""]
    lines += [f"- `{folder}`: {reason}" for folder, reason in study.skipped] or ["None."]
    missing = sorted(r for r, rows in study.histories.items()
                     if not rows and r not in study.truncated)
    if study.truncated or missing:
        lines += ["", "## Training histories", ""]
        lines += [f"- `{r}`: history.csv ends in a partial line (dropped)" for r in study.truncated]
        lines += [f"- `{r}`: no usable history.csv" for r in missing]
    return "\n".join(lines) + "\n"
