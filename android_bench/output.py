"""The printed table of `python -m android_bench` (results.jsonl is `tfkd.bench.results`)."""

import os

from tfkd.bench.results import RESULTS_FILE, publish_files, write_results

__all__ = ["RESULTS_FILE", "format_table", "publish_files", "write_results"]


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
