"""The report's PNG plots, drawn with matplotlib's Agg canvas.

Figures are made with `matplotlib.figure.Figure` on a `FigureCanvasAgg`, never through pyplot:
building a report then cannot switch the backend of a notebook that imported tfkd, and no
figure is left registered in pyplot's global list to leak memory over many rebuilds.

Every plot function takes (study, binary file) and writes one PNG. When the study has nothing
to draw (e.g. no latency measurements), it still writes a valid PNG that says so in its centre,
and returns that sentence for report.md; otherwise it returns None.
"""

import math

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from tfkd.recipes import modes
from tfkd.report import tables
from tfkd.report.tables import number

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
DPI = 120
MAX_LEGEND_ENTRIES = 12


def pareto_front(points):
    """Indices of the points no other point beats on both latency and accuracy.

    A point is dominated when another has latency <= and accuracy >= with one of them strict.
    Of exact duplicates only the first is kept. Points with a missing or NaN coordinate are
    ignored.

    Args:
        points: (latency, accuracy) pairs; lower latency and higher accuracy are better.

    Returns:
        Indices into `points`, by increasing latency (and so increasing accuracy).
    """
    valid = [(number(x), number(y), i) for i, (x, y) in enumerate(points)]
    valid = [(x, y, i) for x, y, i in valid if x is not None and y is not None]
    # Fastest first; at equal latency the most accurate first, so the sweep keeps it alone.
    valid.sort(key=lambda p: (p[0], -p[1], p[2]))
    front, best = [], -math.inf
    for _, y, i in valid:
        if y > best:
            front.append(i)
            best = y
    return front


def _figure(width=8.0, height=5.0):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, f):
    # No Software tag: the PNG then depends only on the data, not the matplotlib version.
    fig.savefig(f, format="png", bbox_inches="tight", metadata={"Software": None})


def _empty(f, title, text):
    """Writes a PNG that says `text` in its centre and returns `text`."""
    fig, ax = _figure()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, transform=ax.transAxes)
    _save(fig, f)
    return text


def _colours(names):
    """A stable colour per name (sorted, then tab10 in order)."""
    cmap = colormaps["tab10"]
    ordered = sorted(set(names), key=tables.sort_key)
    return {name: cmap(i % cmap.N) for i, name in enumerate(ordered)}


def _markers(names):
    ordered = sorted(set(names), key=tables.sort_key)
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(ordered)}


def _key_handle(label, colour="0.3", marker="o", linestyle="none"):
    return Line2D([], [], color=colour, marker=marker, linestyle=linestyle, label=label)


def _limited(handles):
    """At most MAX_LEGEND_ENTRIES legend entries, then one that counts the rest."""
    if len(handles) <= MAX_LEGEND_ENTRIES:
        return handles
    more = Line2D([], [], linestyle="none", label=f"+{len(handles) - MAX_LEGEND_ENTRIES} more")
    return handles[:MAX_LEGEND_ENTRIES] + [more]


def _short(value, _=None):
    """A tick label: 2, 0.5, 250k, 1.5M (log axes would otherwise say 2x10^0)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _short_minor(value, _=None):
    """Labels only the 2x and 5x minor ticks of a decade, so the labels do not collide."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return _short(value) if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def _log_x(ax, values=None):
    """Log x when `values` is None or its positive values span more than 10x."""
    values = [v for v in values if v > 0] if values is not None else [1.0, 100.0]
    if values and max(values) > 10 * min(values):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_short))
        ax.xaxis.set_minor_formatter(FuncFormatter(_short_minor))


def _latency_points(study):
    """[(median ms, accuracy, family, target, label)] for every benchmark with both numbers;
    label names the point's model and setting (the seeds of one share it)."""
    found = []
    for run, key, entry in tables.bench_points(study.runs):
        latency = number(entry.get("median_ms"))
        accuracy = tables.benchmarked_accuracy(run, entry)
        if latency is not None and latency > 0 and accuracy is not None:
            found.append((latency, 100 * accuracy, run.get("family") or "?", key[0],
                          _point_label(run, key)))
    return found


def _point_label(run, key):
    """"mobilenetv3_small@32 kd+ft 2t int8": student, side, mode unless plain kd, threads, and
    the quantization when one run has several timed models."""
    _, threads, variant = key
    parts = [f"{run.get('student', '?')}@{run.get('resolution', '?')}"]
    if run.get("mode") not in (None, "kd"):
        parts.append(str(run["mode"]))
    if threads:
        parts.append(f"{threads}t")
    if variant:
        parts.append(str(variant))
    return " ".join(parts)


def _label_groups(ax, points):
    """Writes each label once, next to the mean of its points (the seeds of one setting)."""
    groups = {}
    for x, y, label in points:
        groups.setdefault(label, []).append((x, y))
    for label, xy in groups.items():
        x = math.exp(sum(math.log(p[0]) for p in xy) / len(xy))  # the x axis is logarithmic
        y = sum(p[1] for p in xy) / len(xy)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7,
                    color="0.25")


def accuracy_vs_latency(study, f):
    """Accuracy vs median latency per benchmark, with each target's Pareto front."""
    title = "Accuracy vs latency"
    found = _latency_points(study)
    if not found:
        return _empty(f, title, "no latency measurements")
    fig, ax = _figure(9, 5.5)
    markers = _markers(p[2] for p in found)
    colours = _colours(p[3] for p in found)
    for latency, accuracy, family, target, _ in found:
        ax.scatter(latency, accuracy, marker=markers[family], color=colours[target], s=40,
                   alpha=0.8)
    _label_groups(ax, [(x, y, f"{label} ({target})" if len(colours) > 1 else label)
                       for x, y, _, target, label in found])
    # One front per target: latencies measured on different devices are not comparable.
    for target, colour in colours.items():
        mine = [(x, y) for x, y, _, t, _ in found if t == target]
        front = [mine[i] for i in pareto_front(mine)]
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color=colour,
                linewidth=1.5)
        ax.scatter([x for x, _ in front], [y for _, y in front], s=150, facecolors="none",
                   edgecolors=colour, linewidths=1.5)
    _log_x(ax, [p[0] for p in found])
    handles = [_key_handle(fam, marker=m) for fam, m in markers.items()]
    handles += [Patch(color=c, label=t) for t, c in colours.items()]
    handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                          markersize=10, label="Pareto front"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    ax.set(title=title + " (accuracy of the benchmarked model)", xlabel="median latency (ms)",
           ylabel="accuracy (%)")
    ax.grid(True, alpha=0.3)
    _save(fig, f)
    return None


def _by_student_mode(runs):
    """{(student, mode): {resolution: [runs]}} for runs with a resolution."""
    lines = {}
    for run in runs:
        resolution = number(run.get("resolution"))
        if resolution is not None:
            key = (run.get("student"), run.get("mode"))
            lines.setdefault(key, {}).setdefault(resolution, []).append(run)
    return {k: lines[k] for k in sorted(lines, key=lambda k: tuple(map(tables.sort_key, k)))}


def _mean_err(groups, field, scale=1.0):
    """(means, errors) of `field` per group; error 0 where the std is undefined."""
    stats = [tables.mean_std(r.get(field) for r in runs) for runs in groups]
    means = [math.nan if m is None else scale * m for m, _ in stats]
    return means, [0.0 if s is None else scale * s for _, s in stats]


def accuracy_memory_vs_resolution(study, f):
    """Test accuracy (left) and memory (right) vs resolution, per (student, mode).

    Memory is the exported model's peak activation memory where the runs were exported (what
    the resolution drives on the device), else the training process's peak RSS.
    """
    title = "Accuracy and peak memory vs resolution"
    lines = _by_student_mode(study.runs)
    if not lines:
        return _empty(f, title, "no run records its resolution")
    exported = any(tables.number(r.get("activation_kb")) for r in study.runs)
    memory, memory_name, memory_label = (
        ("activation_kb", "peak activations (right)", "peak activation memory of the export (KB)")
        if exported else ("peak_rss_mb", "peak RSS (right)", "peak RSS of training (MB)"))
    fig, ax = _figure(9, 5.5)
    right = ax.twinx()
    colours = _colours(lines)
    for key, by_res in lines.items():
        resolutions = sorted(by_res)
        groups = [by_res[r] for r in resolutions]
        accuracy, acc_err = _mean_err(groups, "test_accuracy", 100)
        ax.errorbar(resolutions, accuracy, yerr=acc_err, color=colours[key], marker="o",
                    capsize=3, label=f"{key[0]} {key[1]}")
        used, used_err = _mean_err(groups, memory)
        right.errorbar(resolutions, used, yerr=used_err, color=colours[key], marker="s",
                       linestyle="--", capsize=3, alpha=0.7)
    handles = _limited([_key_handle(f"{s} {m}", colour=c, linestyle="-")
                        for (s, m), c in colours.items()])
    handles += [_key_handle("accuracy (left)", linestyle="-"),
                _key_handle(memory_name, marker="s", linestyle="--")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1), fontsize="small")
    ax.set_xticks(sorted({r for by_res in lines.values() for r in by_res}))
    ax.xaxis.set_major_formatter(FuncFormatter(_short))
    ax.set(title=title + " (mean ± std over seeds)", xlabel="input resolution (px)",
           ylabel="test accuracy (%)")
    right.set_ylabel(memory_label)
    ax.grid(True, alpha=0.3)
    _save(fig, f)
    return None


def accuracy_vs_params(study, f):
    """Mean test accuracy per configuration vs parameter count, by family and mode."""
    title = "Accuracy vs parameters"
    groups = [(key, runs) for key, runs in tables.group_runs(study.runs).items()
              if tables.mean_std(r.get("params") for r in runs)[0]]
    groups = [(k, g) for k, g in groups if tables.mean_std(r.get("test_accuracy")
                                                           for r in g)[0] is not None]
    if not groups:
        return _empty(f, title, "no run records both params and test accuracy")
    fig, ax = _figure(9, 5.5)
    markers = _markers(g[0].get("family") or "?" for _, g in groups)
    colours = _colours(_mode_and_teacher(key) for key, _ in groups)
    several_sides = len({key[1] for key, _ in groups}) > 1
    tops = {}
    for key, runs in groups:
        params = tables.mean_std(r.get("params") for r in runs)[0]
        mean, std = tables.mean_std(r.get("test_accuracy") for r in runs)
        ax.errorbar(params, 100 * mean, yerr=100 * (std or 0.0),
                    color=colours[_mode_and_teacher(key)],
                    marker=markers[runs[0].get("family") or "?"], capsize=3, markersize=7)
        if several_sides:  # a student's sides share its parameter count: name each point's
            ax.annotate(f"{key[1]}px", (params, 100 * mean), textcoords="offset points",
                        xytext=(-6, -3), ha="right", fontsize=7, color="0.35")
        if key[0] not in tops or 100 * mean > tops[key[0]][1]:
            tops[key[0]] = (params, 100 * mean)
    # One name per student, at its best point, so resolutions and modes do not pile names.
    for student, (x, y) in tops.items():
        ax.annotate(str(student), (x, y), textcoords="offset points", xytext=(6, 6),
                    fontsize="small")
    _log_x(ax)
    # Room for the labels of the outermost points.
    ax.margins(x=0.15, y=0.1)
    handles = [_key_handle(fam, marker=m) for fam, m in markers.items()]
    handles += [Patch(color=c, label=str(mode)) for mode, c in colours.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    ax.set(title=title + " (mean ± std over seeds)", xlabel="parameters",
           ylabel="test accuracy (%)")
    ax.grid(True, alpha=0.3)
    _save(fig, f)
    return None


def _mode_and_teacher(key):
    """A group's mode, with its teacher when it has one ("kd (vit_micro)"): two teachers'
    students are two settings."""
    _, _, mode, teacher = key
    learns = mode in modes.MODES and modes.get(mode).teacher
    return f"{mode} ({teacher})" if teacher and learns else str(mode)


def _curve(rows, column):
    """(epochs 1-based, values in %) of one history column; empty if the column is absent."""
    points = [(row.get("epoch", i) + 1, 100 * row[column]) for i, row in enumerate(rows)
              if column in row and not math.isnan(row[column])]
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(study, f):
    """Validation (solid) and training (dashed) accuracy per epoch, one line per run."""
    title = "Training curves"
    runs = [r for r in study.runs if study.histories.get(r["run_id"])]
    if not runs:
        return _empty(f, title, "no usable history.csv")
    fig, ax = _figure(9, 5.5)
    # Seeds of one configuration share a colour, which keeps the legend one entry per config.
    config = {r["run_id"]: (r.get("student"), r.get("resolution"), r.get("mode"),
                            r.get("teacher")) for r in runs}
    colours = _colours(config.values())
    for run in runs:
        rows, colour = study.histories[run["run_id"]], colours[config[run["run_id"]]]
        ax.plot(*_curve(rows, "val_accuracy"), color=colour, marker=".", linewidth=1.2)
        ax.plot(*_curve(rows, "accuracy"), color=colour, linestyle="--", linewidth=0.9)
    labels = [" ".join(str(v) for v in (s, res and f"r{res}", m) if v is not None)
              for s, res, m, _ in colours]
    handles = _limited([_key_handle(lbl, colour=c, linestyle="-", marker=".")
                        for lbl, c in zip(labels, colours.values())])
    handles += [_key_handle("validation", linestyle="-", marker=""),
                _key_handle("training", linestyle="--", marker="")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
    ax.grid(True, alpha=0.3)
    _save(fig, f)
    return None


def layer_error_runs(study):
    """The runs whose export record holds a per-layer int8 diagnosis (worst first)."""
    return [(run, record) for run in study.runs
            for record in tables.tflite_entries(run).values() if record.get("layer_errors")]


def quantization_errors(study, f):
    """The worst int8 tensors of each diagnosed run (up to 4 runs, 12 tensors each)."""
    runs = layer_error_runs(study)[:4]
    fig = Figure(figsize=(9, 3.2 * len(runs)), dpi=DPI)
    FigureCanvasAgg(fig)
    for k, (run, record) in enumerate(runs):
        ax = fig.add_subplot(len(runs), 1, k + 1)
        rows = record["layer_errors"][:12][::-1]  # worst at the top
        labels = [f"{r.get('layer') or r.get('tensor', '')[-28:]} ({r.get('op')})" for r in rows]
        ax.barh(range(len(rows)), [255 * number(r.get("error")) for r in rows], color="C3")
        ax.set_yticks(range(len(rows)), labels, fontsize="x-small")
        ax.set(title=f"{run.get('run_id')}: int8 error per tensor",
               xlabel="RMSE vs float, in quantization steps")
        ax.grid(True, axis="x", alpha=0.3)
    _save(fig, f)
    return None


# Written only when the study has what they show: name -> (function, predicate on the study).
OPTIONAL_PLOTS = {"quantization_errors": (quantization_errors, layer_error_runs)}

# The plots `build` writes, in report order: file name (without .png) -> function.
PLOTS = {
    "accuracy_vs_latency": accuracy_vs_latency,
    "accuracy_memory_vs_resolution": accuracy_memory_vs_resolution,
    "accuracy_vs_params": accuracy_vs_params,
    "training_curves": training_curves,
}


def budget_front(summary, f):
    """The budget search's plot: accuracy against measured latency of every trained candidate,
    each labelled, the Pareto front, the budget line and the winner (`budget_search` summary)."""
    fig, ax = _figure()
    points, budget = summary["pareto"], summary["latency_ms"]
    title = f"Budget search: {budget} ms on {summary['target']}"
    if not points:
        return _empty(f, title, "no candidate fits the budget")
    for p in points:
        ax.scatter(p["ms"], 100 * p["accuracy"], color="C0" if p["pareto"] else "0.6", zorder=3)
        ax.annotate(p["candidate"], (p["ms"], 100 * p["accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    front = sorted((p["ms"], 100 * p["accuracy"]) for p in points if p["pareto"])
    ax.plot(*zip(*front), color="C0", linewidth=1, label="Pareto front")
    ax.axvline(budget, color="C3", linestyle="--", label=f"budget {budget} ms")
    winner = summary.get("winner")
    if winner:
        ax.scatter(winner["retimed_ms"], 100 * winner["tflite_accuracy"], marker="*", s=200,
                   color="C2", zorder=4, label=f"winner {winner['candidate']} (shipped file)")
    ax.set(title=title, xlabel=f"median latency, ms ({summary['threads']} thread(s), "
           f"{summary['delegate']})", ylabel="test accuracy, % (last round reached)")
    ax.legend(fontsize=8)
    _save(fig, f)
    return None
