"""`BenchResult`: the one schema every benchmark path (local, benchmark_model, adb, ssh) fills.

Times are milliseconds and memory is megabytes. A field the tool did not report is None, never 0,
so a missing number cannot be mistaken for a fast or lean model.
"""

import dataclasses
import datetime
import json
import os
import platform
import shutil
import tempfile
from typing import Optional

RESULTS_FILE = "results.jsonl"

# Statistics a benchmark tool reports; None where the output lacks them.
TIMING_FIELDS = ("init_ms", "first_ms", "warmup_ms", "mean_ms", "median_ms", "p5_ms", "p95_ms",
                 "std_ms", "min_ms", "max_ms")
MEMORY_FIELDS = ("memory_init_mb", "memory_overall_mb", "peak_memory_mb")


@dataclasses.dataclass
class BenchResult:
    """One benchmark of one model with one setting (thread count, delegate) on one target.

    Attributes:
        model_path: the .tflite benchmarked (the local path, also for remote targets).
        target: "local", "adb:SERIAL", or the "ssh:user@host[:port]" string as given.
        tool: "litert" (the LiteRT interpreter: in this process, or the runner script on an ssh
            board), "litert-benchmark" or "benchmark_model". Results written before the
            runner was called "litert" say "python".
        runtime: the interpreter package or binary, e.g. "ai_edge_litert".
        runtime_version: its version where known.
        threads: CPU threads asked for.
        delegate: "xnnpack", "none", "gpu", "nnapi", ...
        warmup_runs, num_runs: runs asked for before and during timing.
        count: timed runs the tool reports it made.
        init_ms: interpreter creation and tensor allocation.
        first_ms: the first inference.
        warmup_ms: mean of the warm-up inferences.
        mean_ms, median_ms, p5_ms, p95_ms, std_ms, min_ms, max_ms: steady-state statistics.
        memory_init_mb, memory_overall_mb: memory growth after init and over the whole run,
            from the start of the tool (or, in-process, from before the model was loaded).
        peak_memory_mb: peak resident memory of the benchmarking process during the run.
        device: description of the host or device (model, CPU, OS, ...).
        timestamp: ISO 8601 UTC time the run finished.
        extra: anything tool-specific (op-profiling CSV path, command line, warnings).
    """

    model_path: str
    target: str = "local"
    tool: str = "litert"
    runtime: Optional[str] = None
    runtime_version: Optional[str] = None
    threads: Optional[int] = None
    delegate: Optional[str] = None
    warmup_runs: Optional[int] = None
    num_runs: Optional[int] = None
    count: Optional[int] = None
    init_ms: Optional[float] = None
    first_ms: Optional[float] = None
    warmup_ms: Optional[float] = None
    mean_ms: Optional[float] = None
    median_ms: Optional[float] = None
    p5_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    std_ms: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None
    memory_init_mb: Optional[float] = None
    memory_overall_mb: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    device: dict = dataclasses.field(default_factory=dict)
    timestamp: Optional[str] = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """A plain dict of JSON types."""
        return dataclasses.asdict(self)

    def to_json(self):
        """One line of JSON (the format of results files)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        """The inverse of `to_dict`; unknown keys raise, so a typo is not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown BenchResult fields {unknown}; known: {sorted(names)}")
        return cls(**data)

    def stamped(self):
        """This result with `timestamp` set to now (UTC) if it has none."""
        if self.timestamp:
            return self
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return dataclasses.replace(self, timestamp=now)


def host_description():
    """What the local machine is, for `BenchResult.device`."""
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def append_jsonl(results, path):
    """Appends results to a JSON-lines file, one `BenchResult` per line, flushed to disk.

    Each line is written whole with one write call, so a crash leaves at most a missing line,
    never a half line that a reader would take for a result.
    """
    lines = "".join(r.to_json() + "\n" for r in results)
    with open(path, "a") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path):
    """The `BenchResult`s in a JSON-lines file."""
    with open(path) as f:
        return [BenchResult.from_dict(json.loads(line)) for line in f if line.strip()]


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
