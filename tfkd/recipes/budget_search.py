"""Budget search: the most accurate student that runs within a latency budget on your device.

Command:

    python -m tfkd.recipes.budget_search --latency_ms=0.3 [--target=local|adb[:SERIAL]|ssh:...]
        [--threads=1] [--delegate=xnnpack] [--students=...] [--resolutions=32,48]
        [--quantizations=int8,dynamic] [--budget_s=420]

or from Python: `budget_search.run(budget_search.Config(latency_ms=0.3))`.

1. Latency first. Every candidate (student x resolution x quantization) is built untrained,
   exported the way it would ship (calibrated on training images) and timed on the target:
   latency does not depend on the weights, so candidates over the budget are dropped before
   any training. A latency model, log(ms) = a + b log(MACs) + c log(params) + d [ViT], is
   fitted on those measurements and reported with its leave-one-out error.
2. Then accuracy, by successive halving: every (student, resolution) with a quantization
   that fits is distilled for --rung_epochs; the best 1/--eta continue, each round --eta times
   longer (from where they stopped, reusing the teacher's cached logits), and the last one
   left goes on alone the same way, until the next round would overrun --budget_s seconds of
   student training. Each run is scored after recomputing its BatchNorm statistics
   (--recalibrate_bn_batches): one epoch's moving averages lag its weights.
3. The winner is exported with its fastest quantization that fits, its accuracy checked after
   quantization, and timed again on the target. search.md (and search.json, and
   plots/budget_search.png) give every candidate's latency, the rounds, the Pareto front of
   accuracy against measured latency, the budget line and the winner; report.md has the runs.

Every step is kept in the study folder (latency/, runs/), so the same command resumes after a
kill and decides exactly as an uninterrupted search would (rounds are chosen from the recorded
accuracies and training seconds).

Shards (--shard_index/--num_shards) share one study folder: one machine with several
processes (GPUs), or machines with the same --output_dir on a shared filesystem. Shard 0 times
every candidate on the target (one device, one clock) and ships the winner; each round's runs
are split round-robin, and every shard waits for the whole round before choosing the next, so
all of them choose alike. A shard that sees no new result for STALL_S seconds stops with an
error saying so (a shard that died resumes with its own command).
"""

import dataclasses
import math
import os
import time
from typing import ClassVar

import numpy as np

import tfkd
from tfkd.recipes import cli, engine, folder, inputs, measure, modes
from tfkd.recipes.config import (ConfigError, StudyConfig, check_models, check_sizes,
                                 check_weights, setting, show)
from tfkd.report import pareto_front, plots

NAME = "budget_search"
QUANTIZATIONS = ("int8", "uint8", "dynamic", "float16", "float32")
# How often a shard looks for the other shards' results, and how long it waits without a new
# one before it stops.
POLL_S = 5.0
STALL_S = 2 * 3600.0


@dataclasses.dataclass
class Config(StudyConfig):
    """The search's settings: `StudyConfig`'s, the budget and the candidate space."""

    # The device words of the command line, for StudyConfig's lists.
    FLAG_ALIASES: ClassVar[dict] = {"target": "targets", "threads": "bench_threads",
                                    "delegate": "delegates"}

    teacher_size: int = 32
    latency_ms: float = setting(0.3, "The latency budget: median ms per image on the target "
                                "(--target, --threads, --delegate).")
    students: tuple[str, ...] = setting(
        ("convnet_s", "mobilenetv3_small", "efficientnet_b0", "mobilevit_xxs", "deit_micro"),
        "Candidate students (tfkd.list_models()).")
    resolutions: tuple[int, ...] = setting((32, 48), "Candidate input sides.")
    quantizations: tuple[str, ...] = setting(("int8", "dynamic"), "Candidate exports: "
                                             + ", ".join(QUANTIZATIONS) + ".")
    budget_s: float = setting(420.0, "Seconds of student training for the whole accuracy "
                              "phase (the teacher and the latency phase come on top).")
    rung_epochs: int = setting(1, "Epochs of the first round of successive halving.")
    eta: int = setting(3, "Each round keeps the best 1/eta candidates and trains them eta "
                       "times as many epochs in total.")
    bench_threads: tuple[int, ...] = setting((1,), "CPU threads on the target (--threads).")
    # The first rounds are an epoch or so long: ranked on lagging BatchNorm statistics, a
    # MobileNetV3 scored 0.10 after one epoch, 0.74 once they were recomputed.
    recalibrate_bn_batches: int = 20
    quantization: str = setting("none", "Leave none: the search exports each candidate itself "
                                "(--quantizations).", choices=("none",))

    def check(self):
        super().check()
        check_models(*self.students, field="students")
        check_weights(self.student_weights, self.students, "student_weights")
        for student in self.students:  # a student needs one size it accepts; others are skipped
            check_sizes([max(self.resolutions or (0,))], student, "resolutions")
        for name in ("targets", "bench_threads", "delegates"):
            if len(getattr(self, name)) != 1:
                raise ConfigError(lambda n, name=name: (
                    f"{n(name)}={show(getattr(self, name))}: the search times every candidate "
                    "on one device setting; pass one target, one thread count and one delegate"))
        unknown = [q for q in self.quantizations if q not in QUANTIZATIONS]
        if unknown or not self.quantizations:
            raise ConfigError(lambda n: f"{n('quantizations')}={show(self.quantizations)}: "
                              f"choose from {', '.join(QUANTIZATIONS)}")
        if not self.latency_ms > 0 or not self.budget_s > 0 or self.rung_epochs < 1 \
                or self.eta < 2:
            raise ConfigError(lambda n: (
                f"{n('latency_ms')}={self.latency_ms} {n('budget_s')}={self.budget_s} "
                f"{n('rung_epochs')}={self.rung_epochs} {n('eta')}={self.eta}: pass a latency "
                "and a budget > 0, at least 1 epoch and eta >= 2, e.g. 0.3, 420, 1 and 3"))
        if len(self.seeds) != 1:
            raise ConfigError(lambda n: f"{n('seeds')}={show(self.seeds)}: the search trains "
                              "each candidate once; pass one seed")


def run(config=None):
    """Runs (or resumes) the search; returns its summary (the dict written to search.json)."""
    config = config or Config()
    config.check()
    study = engine.open_study(NAME, config)
    data = inputs.load_data(config, config.seeds[0])
    latencies = measure_latencies(config, study, data)
    model = fit_latency_model(latencies)
    fitting = [c for c in latencies if c["median_ms"] <= config.latency_ms]
    print(f"latency: {len(fitting)} of {len(latencies)} candidates within "
          f"{config.latency_ms} ms", flush=True)
    rounds = halving(config, study, _pairs(fitting)) if fitting else []
    if config.shard_index != 0:
        print(f"shard {config.shard_index}: search done; shard 0 ships the winner and writes "
              f"{os.path.join(study.dir, 'search.md')}", flush=True)
        return {"rounds": rounds, "winner": None}
    winner = ship_winner(config, study, data, rounds, fitting) if rounds else None
    summary = {"latency_ms": config.latency_ms, "target": config.targets[0],
               "threads": config.bench_threads[0], "delegate": config.delegates[0],
               "candidates": latencies, "latency_model": model, "rounds": rounds,
               "winner": winner, "pareto": _pareto(rounds, fitting)}
    folder.write_json(os.path.join(study.dir, "search.json"), summary)
    with open(os.path.join(study.dir, "search.md"), "w", encoding="utf-8") as f:
        f.write(search_markdown(summary))
    os.makedirs(os.path.join(study.dir, "plots"), exist_ok=True)
    with open(os.path.join(study.dir, "plots", "budget_search.png"), "wb") as f:
        plots.budget_front(summary, f)
    print(f"search: {os.path.join(study.dir, 'search.md')}")
    return summary


def candidate_id(student, resolution, quantization):
    """A candidate's name in the study folder: "mobilenetv3_small-r32-int8"."""
    return f"{engine.path_safe(student)}-r{resolution}-{quantization}"


def measure_latencies(config, study, data):
    """Every candidate's median latency on the target, untrained; kept in latency/*.json.
    Shard 0 measures; the other shards wait for its files."""
    planned = []
    os.makedirs(os.path.join(study.dir, "latency"), exist_ok=True)
    for student in config.students:
        minimum = tfkd.models.min_image_size(student)
        skipped = [r for r in config.resolutions if r < minimum]
        if skipped:
            print(f"latency: {student} needs sides >= {minimum}; skipping {skipped}", flush=True)
        planned += [(student, r, q) for r in config.resolutions if r >= minimum
                    for q in config.quantizations]
    if config.shard_index == 0:
        return [_latency(config, study, data, *candidate) for candidate in planned]
    files = [os.path.join(study.dir, "latency", candidate_id(*c) + ".json") for c in planned]
    wait_for_shards(config, "candidate latencies timed by shard 0",
                    lambda: [f for f in files if not os.path.exists(f)])
    return [folder.read_json(f) for f in files]


def wait_for_shards(config, what, missing):
    """Returns once `missing()` (the files or runs other shards still owe) is empty.

    Raises:
        RuntimeError: nothing new for STALL_S seconds.
    """
    left, since, shown = missing(), time.monotonic(), None
    while left:
        if len(left) != shown:  # a line when the count changes, not every poll
            shown = len(left)
            print(f"shard {config.shard_index}: waiting for {len(left)} {what} "
                  f"(first: {os.path.basename(str(left[0]))})", flush=True)
        time.sleep(POLL_S)
        now_left = missing()
        if len(now_left) < len(left):
            since = time.monotonic()
        elif time.monotonic() - since > STALL_S:
            raise RuntimeError(
                f"shard {config.shard_index}: no new {what} for {STALL_S:.0f} s; still "
                f"missing {', '.join(os.path.basename(str(x)) for x in now_left[:5])}. The "
                "shards of a search share one study folder: start them on one machine, or on "
                "machines with the same --output_dir on a shared filesystem; a shard that "
                "stopped resumes with its own command")
        left = now_left


def _latency(config, study, data, student, resolution, quantization):
    base = os.path.join(study.dir, "latency", candidate_id(student, resolution, quantization))
    if os.path.exists(base + ".json"):
        return folder.read_json(base + ".json")
    model = tfkd.create_model(student, image_size=resolution, num_classes=data.num_classes)
    export = tfkd.export.to_tflite(model, base + ".tflite", quantization=quantization,
                                   representative_data=data.calibration)
    (result,) = time_on_target(config, base + ".tflite")
    family, kind = tfkd.models.family_and_kind(student)
    record = {"candidate": os.path.basename(base), "student": student,
              "resolution": resolution, "quantization": quantization, "family": family,
              "kind": kind, "params": int(model.count_params()),
              "macs": int(measure.macs_per_image(model)), "size_bytes": export.size_bytes,
              "median_ms": result.median_ms}
    folder.write_json(base + ".json", record)
    print(f"latency {record['candidate']}: {result.median_ms:.3f} ms", flush=True)
    return record


def time_on_target(config, path):
    """`tfkd.bench.run` on the search's one target, thread count and delegate."""
    target = config.targets[0]
    return tfkd.bench.run(path, target, threads=config.bench_threads[0],
                          delegate=config.delegates[0], **config.bench_kwargs(target))


def fit_latency_model(latencies):
    """Least squares of log(ms) on log(MACs), log(params), a ViT indicator and one indicator
    per quantization after the first.

    Returns:
        {"coefficients", "n", "loo_mean_abs_pct", "loo_max_abs_pct", "predicted_ms"}, or
        {"n", "note"} with fewer than twice as many measurements as coefficients.
    """
    usable = [c for c in latencies if c["median_ms"] > 0 and c["macs"] > 0]
    extra = list(dict.fromkeys(c["quantization"] for c in usable))[1:]
    names = ["intercept", "log_macs", "log_params", "vit", *extra]
    if len(usable) < 2 * len(names):
        return {"n": len(usable), "note": f"{len(usable)} measurements for {len(names)} "
                f"coefficients: no model fitted (it needs {2 * len(names)})"}
    x = np.array([[1.0, math.log(c["macs"]), math.log(c["params"]),
                   1.0 if c["kind"] == "vit" else 0.0,
                   *(1.0 if c["quantization"] == q else 0.0 for q in extra)] for c in usable])
    y = np.log([c["median_ms"] for c in usable])
    coefficients = np.linalg.lstsq(x, y, rcond=None)[0]
    errors = []
    for i in range(len(usable)):
        keep = np.arange(len(usable)) != i
        fit = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        errors.append(abs(math.exp(x[i] @ fit) / usable[i]["median_ms"] - 1.0) * 100.0)
    return {"coefficients": dict(zip(names, (round(float(c), 4) for c in coefficients))),
            "n": len(usable), "loo_mean_abs_pct": round(float(np.mean(errors)), 1),
            "loo_max_abs_pct": round(float(np.max(errors)), 1),
            "predicted_ms": {c["candidate"]: round(math.exp(row @ coefficients), 4)
                             for c, row in zip(usable, x)}}


def _pairs(fitting):
    """The distinct (student, resolution) of the candidates that fit, in candidate order."""
    return list(dict.fromkeys((c["student"], c["resolution"]) for c in fitting))


def halving(config, study, pairs):
    """Successive halving over `pairs`; returns one dict per round (its runs' results)."""
    rounds, survivors, done, spent, previous = [], list(pairs), 0, 0.0, {}
    seed = config.seeds[0]
    while survivors:
        total = config.rung_epochs * config.eta ** len(rounds)
        runs = [engine.RunSpec(student, resolution, modes.KD, seed, total - done,
                               init_from=previous.get((student, resolution)),
                               tag=f"round{len(rounds)}")
                for student, resolution in survivors]
        engine.run_study(NAME, config, runs, _format_round)
        wait_for_shards(config, f"runs of round {len(rounds)}",
                        lambda runs=runs: [s.run_id for s in runs
                                           if not study.completed(s.run_id)])
        rows = [study.completed(spec.run_id) for spec in runs]
        by_pair = {(r["student"], r["resolution"]): r for r in rows}
        spent += sum(by_pair[p]["train_seconds"] for p in survivors)
        rounds.append({"epochs": total, "spent_s": round(spent, 1), "results": [
            {"student": s, "resolution": r, "accuracy": by_pair[(s, r)]["test_accuracy"],
             "run_id": by_pair[(s, r)]["run_id"]} for s, r in survivors]})
        previous = {p: os.path.join(study.run_dir(by_pair[p]["run_id"]), folder.STUDENT)
                    for p in survivors}
        # The best 1/eta go on; the last one left goes on alone, eta times longer each round,
        # while the budget lasts (a budget is there to be spent on the answer).
        ranked = sorted(survivors, key=lambda p: -by_pair[p]["test_accuracy"])
        keep = ranked[:max(1, len(survivors) // config.eta)]
        more = config.rung_epochs * config.eta ** len(rounds) - total
        cost = sum(by_pair[p]["epoch_seconds"] or 0.0 for p in keep) * more
        if spent + cost > config.budget_s:
            rounds[-1]["stopped"] = (f"the next round ({more} more epochs for {len(keep)}) would "
                                     f"take ~{cost:.0f} s; {spent:.0f} of {config.budget_s:.0f} "
                                     "s spent")
            break
        survivors, done = keep, total
    return rounds


def _format_round(rows):
    return "\n".join(f"{r['run_id']:<44} {r['test_accuracy']:.4f} {r['train_seconds']:7.1f} s"
                     for r in rows)


def ship_winner(config, study, data, rounds, fitting):
    """The last round's most accurate student, exported with its fastest fitting quantization,
    checked after quantization and timed again on the target."""
    best = max(rounds[-1]["results"], key=lambda r: r["accuracy"])
    options = sorted((c for c in fitting if (c["student"], c["resolution"]) ==
                      (best["student"], best["resolution"])), key=lambda c: c["median_ms"])
    choice = options[0]
    student = tfkd.models.load_model(os.path.join(study.run_dir(best["run_id"]), folder.STUDENT))
    path = os.path.join(study.dir, f"winner_{choice['candidate']}.tflite")
    check = tfkd.export.export_and_check(
        student, path, data.test, quantization=choice["quantization"],
        representative_data=data.calibration, max_drop_points=config.max_quantization_drop)
    (timed,) = time_on_target(config, path)
    return {"candidate": choice["candidate"], "run_id": best["run_id"],
            "float_accuracy": check.float_accuracy, "tflite_accuracy": check.tflite_accuracy,
            "drop_points": check.drop_points, "path": path,
            "search_ms": choice["median_ms"], "retimed_ms": timed.median_ms,
            "within_budget": timed.median_ms <= config.latency_ms}


def _pareto(rounds, fitting):
    """Every trained candidate as (accuracy of its last round, measured ms), and the front."""
    last = {}
    for round_ in rounds:
        for r in round_["results"]:
            last[(r["student"], r["resolution"])] = r["accuracy"]
    points = [{"candidate": c["candidate"], "accuracy": last[(c["student"], c["resolution"])],
               "ms": c["median_ms"]} for c in fitting if (c["student"], c["resolution"]) in last]
    front = set(pareto_front([(p["ms"], p["accuracy"]) for p in points]))
    for index, p in enumerate(points):
        p["pareto"] = index in front
    return points


def search_markdown(summary):
    """search.md: the budget, every candidate's latency, the rounds, the front, the winner."""
    budget = summary["latency_ms"]
    model = summary["latency_model"]
    predicted = model.get("predicted_ms", {})
    lines = [f"# Budget search: {budget} ms on {summary['target']} "
             f"({summary['threads']} thread(s), {summary['delegate']})", "",
             "## Latency (untrained candidates, as shipped)", "",
             "| Candidate | Params | MMACs | kB | ms | model ms | fits |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in summary["candidates"]:
        lines.append(f"| {c['candidate']} | {c['params']:,} | {c['macs'] / 1e6:.2f} | "
                     f"{c['size_bytes'] / 1e3:.1f} | {c['median_ms']:.3f} | "
                     f"{predicted.get(c['candidate'], float('nan')):.3f} | "
                     f"{'yes' if c['median_ms'] <= budget else 'no'} |")
    lines += ["", "Latency model: " + (
        f"log(ms) = {model['coefficients']} on {model['n']} measurements; leave-one-out error "
        f"{model['loo_mean_abs_pct']}% mean, {model['loo_max_abs_pct']}% max."
        if "coefficients" in model else model["note"] + "."), "", "## Rounds", ""]
    for index, round_ in enumerate(summary["rounds"]):
        results = ", ".join(f"{r['student']}@{r['resolution']} {100 * r['accuracy']:.2f}%"
                            for r in round_["results"])
        lines.append(f"- round {index}: {round_['epochs']} epoch(s) in total; {results}; "
                     f"{round_['spent_s']} s of training so far"
                     + (f"; stopped: {round_['stopped']}" if round_.get("stopped") else ""))
    if not summary["rounds"]:
        lines.append("No candidate fits the budget: raise --latency_ms or add smaller "
                     "students, resolutions or quantizations.")
    lines += ["", "## Accuracy against measured latency", "",
              "| Candidate | Accuracy % | ms | Pareto |", "| --- | --- | --- | --- |"]
    lines += [f"| {p['candidate']} | {100 * p['accuracy']:.2f} | {p['ms']:.3f} | "
              f"{'yes' if p['pareto'] else ''} |" for p in summary["pareto"]]
    winner = summary["winner"]
    lines += ["", "## Winner", ""]
    if winner:
        lines.append(
            f"**{winner['candidate']}** ({winner['run_id']}): {100 * winner['float_accuracy']:.2f}% "
            f"float, {100 * winner['tflite_accuracy']:.2f}% after quantization "
            f"({winner['drop_points']:+.2f} points lost); {winner['search_ms']:.3f} ms in the "
            f"search, {winner['retimed_ms']:.3f} ms timed again "
            f"({'within' if winner['within_budget'] else 'OVER'} the {budget} ms budget).")
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    cli.main(run, Config)
