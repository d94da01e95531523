"""`make bench`: runs the benchmarks, merges their ratios into results.json, prints a table.

    python benchmarks/run.py                              # everything -> benchmarks/results.json
    python benchmarks/run.py --only input_pipeline        # one benchmark, merged into the file
    python benchmarks/run.py --readme README.md           # also the README's Performance table
    python benchmarks/run.py --quick                      # smoke test: tiny sizes, writes nothing

These are benchmarks, not tests: a missed target is reported, not an error. Each benchmark is a
module in this folder (a script folder, not a package: modules import each other by bare name,
`import timing`, since this script's folder is on sys.path) with

    def run(quick=False) -> dict   # results.json key -> timing.entry(...)

Every number is a ratio measured in one process with the candidates interleaved round by round
(see timing.py), so it holds across machines better than absolute times. A module that does not
exist yet is reported as "not available" and skipped. `local_vs_litert_benchmark.py` is a
separate check (tfkd's LiteRT timing against `litert-benchmark`) that this harness does not run.

results.json holds one entry per key (value, target, passed, raw measurements, note, plus the
module that measured it, when and how long it took) and `host`: the machine and versions of the
latest run. A value that is a list of row dicts (int8_latency) is shown as a table of its own.
"""

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # imported from elsewhere (the tests): siblings must still import
    sys.path.insert(0, HERE)

BENCHMARKS = ["kd_step", "kd_vs_keras", "cached_kd", "input_pipeline", "int8_latency",
              "image_folder", "quantization_choice", "feature_kd"]
DEFAULT_OUTPUT = os.path.join(HERE, "results.json")
START_MARKER = "<!-- perf:start"
END_MARKER = "<!-- perf:end -->"
COMMAND = "make bench"
_ENTRY_KEYS = ("value", "target", "passed", "raw", "note")
_NOT_AVAILABLE = "not available"


class BenchmarkError(ValueError):
    """A benchmark module broke the harness's contract (what it returned, how it is named)."""


# ---- running -------------------------------------------------------------------------------

def load_benchmark(name):
    """The benchmark module `name`, or None when no such module exists (yet).

    Only the module's own absence counts as "not available": a module that exists but fails to
    import (a missing dependency, a syntax error) raises, so a broken benchmark is not mistaken
    for one nobody wrote.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None
        raise


def check_entries(name, result):
    """Raises BenchmarkError unless `result` maps keys to `timing.entry` dicts."""
    if not isinstance(result, dict) or not result:
        raise BenchmarkError(f"{name}.run() returned {type(result).__name__}; it must return a "
                             "non-empty dict results-key -> timing.entry(...)")
    for key, value in result.items():
        missing = [k for k in _ENTRY_KEYS if not isinstance(value, dict) or k not in value]
        if missing:
            raise BenchmarkError(f"{name}.run() returned {key!r} without {missing}; build each "
                                 "value with timing.entry(value, target, raw, ...)")


def run_one(name, quick):
    """Runs one benchmark module; returns (status, entries).

    status is "ok", "not available" or "failed: <error>"; a failure prints its traceback and
    yields no entries, so one broken benchmark does not cost the others' numbers.
    """
    module = load_benchmark(name)
    if module is None:
        return _NOT_AVAILABLE, {}
    start = time.perf_counter()
    try:
        result = module.run(quick=quick)
        check_entries(name, result)
    except Exception as e:  # noqa: BLE001 - reported and counted in the exit status
        traceback.print_exc()
        return f"failed: {type(e).__name__}: {e}", {}
    meta = {"benchmark": name, "measured_at": _now(), "quick": bool(quick),
            "seconds": round(time.perf_counter() - start, 1)}
    return "ok", {key: {**value, **meta} for key, value in result.items()}


def run_benchmarks(names, quick=False):
    """Runs the named benchmarks in order; returns ({name: status}, {key: entry})."""
    statuses, entries = {}, {}
    for name in names:
        print(f"== {name}", flush=True)
        status, new = run_one(name, quick)
        statuses[name] = status
        if status == _NOT_AVAILABLE:
            print(f"{name}: not available (no benchmarks/{name}.py yet); skipped", flush=True)
        entries.update(new)
    return statuses, entries


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- results.json --------------------------------------------------------------------------

def host_info():
    """The machine and software versions the numbers were measured with."""
    import keras
    import tensorflow as tf

    import tfkd
    from tfkd.bench.results import host_description
    return {**host_description(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "tfkd": tfkd.__version__, "commit": _git_commit(), "date": _now()}


def _git_commit():
    try:
        done = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def read_results(path):
    """The results stored at `path`, or {} when there is no file yet."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it and run the benchmarks "
                             "again") from None


def merge(old, new_entries, ran, host):
    """`old` results updated with this run.

    Keys measured before by a module that ran now are dropped first (a renamed key does not
    linger); keys of modules that did not run are kept as they were.
    """
    merged = {k: v for k, v in old.items()
              if k != "host" and not (isinstance(v, dict) and v.get("benchmark") in ran)}
    merged.update(new_entries)
    ordered = sorted(merged, key=lambda k: _order(merged[k]))  # stable: a module's own order
    return {"host": host, **{k: merged[k] for k in ordered}}


def _order(entry):
    name = entry.get("benchmark") if isinstance(entry, dict) else None
    return BENCHMARKS.index(name) if name in BENCHMARKS else len(BENCHMARKS)


def write_json(path, data):
    """Writes JSON atomically: a temporary file in the same folder, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".results.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---- tables --------------------------------------------------------------------------------

def entries_of(results):
    """The (key, entry) pairs of a results dict, without `host`."""
    return [(k, v) for k, v in results.items() if k != "host" and isinstance(v, dict)]


def format_cell(value):
    """A table cell: numbers to 2 decimals (3 significant digits when small), None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, int) or abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3g}"
    return str(value)


def _is_table(value):
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def markdown_rows(rows):
    """A Markdown table of row dicts; the columns are the first row's keys."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(results):
    """The summary table (key, value, target, pass), then one table per tabular value.

    A "(quick)" mark flags numbers from a --quick smoke run.
    """
    rows, extra = [], []
    for key, entry in entries_of(results):
        value = entry.get("value")
        cell = "table below" if _is_table(value) else format_cell(value)
        if entry.get("quick"):
            cell += " (quick)"
        rows.append({"key": f"`{key}`", "value": cell, "target": format_cell(entry.get("target")),
                     "pass": format_cell(entry.get("passed"))})
        if _is_table(value):
            extra.append(f"`{key}`:\n\n{markdown_rows(value)}")
    if not rows:
        return "(no benchmark results yet)"
    return "\n\n".join([markdown_rows(rows), *extra])


def notes(results):
    """One Markdown bullet per entry that has a note."""
    return "\n".join(f"- `{k}`: {e['note']}" for k, e in entries_of(results) if e.get("note"))


def measured_line(results, command=COMMAND):
    """When, where and how the numbers were measured, in one sentence."""
    host = results.get("host", {})
    dates = sorted({e["measured_at"][:10] for _, e in entries_of(results)
                    if e.get("measured_at")})
    when = dates[0] if len(dates) == 1 else (f"{dates[0]} to {dates[-1]}" if dates else "—")
    commit = f", commit `{host['commit']}`" if host.get("commit") else ""
    return (f"Measured by `{command}` on {when}: {host.get('processor') or 'unknown CPU'}, "
            f"{host.get('cpu_count', '?')} CPUs, TensorFlow {host.get('tensorflow', '?')}, "
            f"Keras {host.get('keras', '?')}{commit}. Ratios are medians of per-round ratios of "
            "candidates interleaved in one process; raw timings are in "
            "`benchmarks/results.json`.")


def readme_block(results, command=COMMAND):
    """What goes between the README's perf markers."""
    parts = [markdown_table(results), notes(results), measured_line(results, command)]
    return "\n\n".join(p for p in parts if p)


def replace_block(text, block):
    """`text` with the lines between the perf markers replaced by `block`.

    Raises:
        ValueError: saying which marker lines to add when they are missing or out of order.
    """
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < 0 or end < start or text.count(START_MARKER) != 1 \
            or text.count(END_MARKER) != 1:
        raise ValueError(f"the README needs exactly one '{START_MARKER} -->' line followed by "
                         f"one '{END_MARKER}' line; add both where the Performance table goes")
    start_line_end = text.find("\n", start)
    if start_line_end < 0 or start_line_end > end:
        raise ValueError(f"put '{START_MARKER} -->' and '{END_MARKER}' on lines of their own")
    return text[:start_line_end + 1] + block.rstrip("\n") + "\n" + text[end:]


def update_readme(path, block):
    """Rewrites the perf block of the README at `path` (atomically)."""
    with open(path) as f:
        text = f.read()
    try:
        new = replace_block(text, block)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".readme.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---- command line --------------------------------------------------------------------------

def parse_args(argv):
    """The command line as an argparse namespace; usage errors say what to pass instead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help=f"run only these benchmarks (of {', '.join(BENCHMARKS)}) and merge "
                             "their keys into the existing results file")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny sizes and 1-2 rounds; the numbers mean nothing, "
                             "so nothing is written unless --output is given")
    parser.add_argument("--output", default=None,
                        help=f"results file (default {os.path.relpath(DEFAULT_OUTPUT)})")
    parser.add_argument("--readme", default=None,
                        help="also replace the README's perf block (between the "
                             f"'{START_MARKER} -->' and '{END_MARKER}' lines) with the table")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only or [] if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    if args.quick and args.readme:
        parser.error("--quick numbers are smoke-test numbers, not measurements; drop --readme")
    if args.readme and not os.path.isfile(args.readme):
        parser.error(f"--readme {args.readme}: no such file")
    if args.output is None and not args.quick:
        args.output = DEFAULT_OUTPUT
    return args


def _quiet_logs():
    # TensorFlow's C++ start-up lines and the TFLite converter's absl INFO lines would bury
    # the table; the caller can still ask for them by setting the variables.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    except ImportError:
        pass


def main(argv=None):
    """Runs the benchmarks; returns the exit status (1 when a benchmark failed)."""
    args = parse_args(argv)
    _quiet_logs()
    names = args.only or BENCHMARKS
    statuses, entries = run_benchmarks(names, quick=args.quick)
    ran = [n for n, s in statuses.items() if s == "ok"]
    results = merge(read_results(args.output) if args.output else {}, entries, ran, host_info())
    print("\n" + markdown_table(results) + "\n")
    for name, status in statuses.items():
        if status != "ok":
            print(f"{name}: {status}")
    if args.output:
        write_json(args.output, results)
        print(f"results: {args.output}")
    if args.readme:
        command = f"python benchmarks/run.py --only {' '.join(args.only)}" if args.only \
            else COMMAND
        update_readme(args.readme, readme_block(results, command))
        print(f"README table: {args.readme}")
    return 1 if any(s.startswith("failed") for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
