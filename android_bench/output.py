"""Results on this machine: the JSON-lines file, the op-profiling CSVs, the printed table."""

import os
import shutil
import tempfile

from tfkd.bench.results import append_jsonl

RESULTS_FILE = "results.jsonl"


def write_results(results, output_dir):
    """Appends `results` to `output_dir/results.jsonl` as one atomic step; returns its path.

    The file is rewritten into a temporary file (old lines, then these) that replaces it, so a
    reader or a crash sees either none or all of this run's lines.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RESULTS_FILE)
    fd, tmp = tempfile.mkstemp(prefix=f".{RESULTS_FILE}.", suffix=".part", dir=output_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            if os.path.exists(path):
                with open(path, "rb") as old:
                    shutil.copyfileobj(old, out)
                    if old.tell() and not _ends_with_newline(old):
                        out.write(b"\n")  # a hand-edited file: keep our first line whole
                shutil.copymode(path, tmp)
            else:
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users
        append_jsonl(results, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _ends_with_newline(f):
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def publish_files(staging, output_dir):
    """Moves every file of `staging` into `output_dir`, then removes `staging`."""
    os.makedirs(output_dir, exist_ok=True)
    for name in sorted(os.listdir(staging)):
        shutil.move(os.path.join(staging, name), os.path.join(output_dir, name))
    shutil.rmtree(staging, ignore_errors=True)


def format_table(results):
    """A plain-text table: model, threads, delegate, mean/median/p95 ms, peak memory MB."""
    header = ("model", "threads", "delegate", "mean ms", "median ms", "p95 ms", "peak MB")
    rows = [(os.path.basename(r.model_path), str(r.threads), str(r.delegate), _fmt(r.mean_ms),
             _fmt(r.median_ms), _fmt(r.p95_ms), _fmt(r.peak_memory_mb)) for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def _fmt(value):
    return "-" if value is None else f"{value:.2f}"
