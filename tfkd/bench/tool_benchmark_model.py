"""The driver of the official TFLite `benchmark_model` tool, on any target.

    put(benchmark_model, model.tflite) -> per (threads, delegate): build_args (the delegate's
    flags) -> device.run -> check_output (the parser) -> BenchResult; op-profiling CSVs fetched

The binary is `benchmark_binary=` or the official prebuilt for the device's platform (from the
cache, downloaded once). Profiling CSVs are fetched into a staging folder and moved into
`output_dir` only once every setting succeeded (without `output_dir` they stay in that folder);
`profiling_output_csv_file=` names one local file instead (the last setting's CSV).
"""

import copy
import dataclasses
import logging
import os
import re
import secrets
import shutil
import tempfile
import time

from tfkd.bench import benchmark_tool, fetch
from tfkd.bench.results import publish_files

SETTINGS = ("min_secs", "enable_op_profiling", "profiling_output_csv_file",
            "report_peak_memory_footprint", "extra_args")
_BINARY, _MODEL = "benchmark_model", "model.tflite"

logger = logging.getLogger("tfkd.bench")


def check(job):
    """Every setting through `build_args`, and the binary given, before any device is reached."""
    for threads, delegate in job.plan:
        benchmark_tool.build_args(_MODEL, num_threads=threads, delegate=delegate,
                                  num_runs=job.num_runs, warmup_runs=job.warmup_runs,
                                  **job.settings)
    binary = job.benchmark_binary
    if binary is not None and not os.path.isfile(binary):
        raise FileNotFoundError(f"benchmark_binary {os.fspath(binary)!r} does not exist; pass "
                                "the path of a benchmark_model built for the device's CPU")


def run(device, job):
    """One `BenchResult` per setting of `job.plan`, the tool run on `device`."""
    binary, platform = _binary(device, job.benchmark_binary)
    paths = device.put({_BINARY: binary, _MODEL: job.model_path}, executable=(_BINARY,))
    profiles = _Profiles(job) if job.settings.get("enable_op_profiling") else None
    try:
        results = [_run_one(device, job, paths, threads, delegate, profiles,
                            {"benchmark_binary": binary, "platform": platform})
                   for threads, delegate in job.plan]
    except BaseException:
        if profiles:
            profiles.discard()
        raise
    if profiles:
        profiles.publish()
    return results


def _binary(device, benchmark_binary):
    """(local binary, platform name or None): the given one, else the cached prebuilt."""
    if benchmark_binary is not None:
        return os.fspath(benchmark_binary), None
    platform = device.benchmark_platform()
    return os.fspath(fetch.fetch_benchmark_tool(platform)), platform


def _run_one(device, job, paths, threads, delegate, profiles, origin):
    settings = {k: v for k, v in job.settings.items() if k != "profiling_output_csv_file"}
    csv = f"{device.folder}/op_profile-t{threads}-{delegate}.csv" if profiles else None
    args = benchmark_tool.build_args(paths[_MODEL], num_threads=threads, delegate=delegate,
                                     num_runs=job.num_runs, warmup_runs=job.warmup_runs,
                                     **settings, profiling_output_csv_file=csv)
    logger.info("benchmarking %s on %s: threads=%d delegate=%s",
                os.path.basename(job.model_path), device.name, threads, delegate)
    done = device.run([paths[_BINARY], *args], job.timeout_s)
    parsed = benchmark_tool.check_output(
        done.status, done.output, f"on {device.name}, threads={threads}, delegate={delegate}")
    extra = {**parsed.extra, "argv": [paths[_BINARY], *args], "remote_command": done.command,
             "raw_tail": benchmark_tool.tail(done.output),
             **{k: v for k, v in origin.items() if v is not None}, **device.extra}
    if parsed.delegate not in (None, delegate):
        extra["reported_delegate"] = parsed.delegate  # what the tool says it used
    if parsed.threads not in (None, threads):
        extra["reported_threads"] = parsed.threads
    notes = [*extra.get("warnings", []), *device.warnings]
    if csv:
        extra["op_profile_csv"], problem = profiles.fetch(device, csv, threads, delegate)
        notes += [problem] if problem else []
    if notes:
        extra["warnings"] = notes
    return dataclasses.replace(
        parsed, model_path=os.fspath(job.model_path), target=device.name,
        tool=benchmark_tool.TOOL, runtime=benchmark_tool.TOOL, threads=threads,
        delegate=delegate, num_runs=job.num_runs, warmup_runs=job.warmup_runs,
        device=copy.deepcopy(device.describe()), extra=extra).stamped()


class _Profiles:
    """Where the op-profiling CSVs of one run go."""

    def __init__(self, job):
        self.fixed = job.settings.get("profiling_output_csv_file")
        self.output_dir = job.output_dir
        self.staging = tempfile.mkdtemp(prefix="tfkd-profiles-")
        stem = os.path.splitext(os.path.basename(os.fspath(job.model_path)))[0]
        run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        self.prefix = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)}-{run_id}"

    def fetch(self, device, remote, threads, delegate):
        """(final local path or None, warning or None) for one CSV."""
        name = f"{self.prefix}-t{threads}-{delegate}.csv"
        local = self.fixed or os.path.join(self.staging, name)
        try:
            device.fetch(remote, local)
        except FileNotFoundError as error:  # the tool wrote none; a lost device still raises
            return None, f"no op-profiling CSV pulled: {error}"
        return self.fixed or os.path.join(self.output_dir or self.staging, name), None

    def publish(self):
        if self.output_dir is not None:
            publish_files(self.staging, self.output_dir)
        elif self.fixed:
            shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self):
        shutil.rmtree(self.staging, ignore_errors=True)
