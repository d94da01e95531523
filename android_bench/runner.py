"""One benchmark session on a phone: push, run each setting, pull, clean up, write results.

The per-run folder on the device is always removed, whatever happened (tool failure, timeout,
lost device, Ctrl-C). Results are written only once every setting has succeeded, so a results
file never holds part of a run that looks like a whole one.
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

from android_bench import adb as adb_lib
from android_bench import device as device_lib
from android_bench.adb import quote
from android_bench.errors import (AdbError, AdbTimeout, NotExecutable, RemoteCommandFailed,
                                  tail)
from android_bench.output import publish_files, write_results
from tfkd.bench.benchmark_tool import BenchmarkFailed, UnparseableOutput, build_args, parse
from tfkd.bench.fetch import fetch_benchmark_tool, platform_for_abi

logger = logging.getLogger("android_bench")

# /data/local/tmp is the one place the shell user may write and execute on stock Android.
REMOTE_ROOT = "/data/local/tmp/tfkd"
# The benchmark_model flags per delegate. An accelerator runs without XNNPACK, so the ops it
# does not take run on the builtin CPU kernels and the timing is of that delegate alone.
DELEGATES = {
    "xnnpack": {"use_xnnpack": True},
    "gpu": {"use_gpu": True, "use_xnnpack": False},
    "nnapi": {"use_nnapi": True, "use_xnnpack": False},
    "none": {"use_xnnpack": False},
}


def run(model_path, *, serial=None, threads=(1,), delegates=("xnnpack",), taskset=None,
        enable_op_profiling=False, benchmark_binary=None, num_runs=50, warmup_runs=5,
        min_secs=None, timeout_s=300, output_dir=None, adb=None):
    """Benchmarks a .tflite model on an Android phone with `benchmark_model`, over adb.

    Args:
        model_path: the .tflite file on this machine.
        serial: the device; default `$ANDROID_SERIAL`, else the only one attached.
        threads: CPU thread counts; one result per thread count and delegate.
        delegates: any of "xnnpack", "gpu", "nnapi", "none" (builtin CPU kernels).
        taskset: a hex CPU mask (e.g. "f0") to pin the tool to those cores with `taskset`.
        enable_op_profiling: also profile each op; the CSV is pulled into `output_dir` (a new
            temporary folder when `output_dir` is None) and named in `extra["op_profile_csv"]`.
        benchmark_binary: a benchmark_model built for the phone; default the official prebuilt
            for its ABI, from the cache or downloaded (`tfkd.bench.fetch_benchmark_tool`).
        num_runs, warmup_runs, min_secs: timed runs (at least `min_secs` worth) and warm-ups.
        timeout_s: limit in seconds for each adb command, the benchmark runs included.
        output_dir: where `results.jsonl` is appended; None writes no results file.
        adb: the adb executable; default `$ADB`, else `adb` on PATH.

    Returns:
        One stamped `BenchResult` per setting, threads-major, target "adb:SERIAL".

    Raises:
        ValueError, FileNotFoundError: bad arguments (checked before touching the device).
        AdbError: adb missing, no/several/unready devices, a lost device, a timeout, ...
        BenchmarkFailed, UnparseableOutput: the tool failed or printed no timing.
    """
    settings = _settings(threads, delegates)
    counts = {"num_runs": num_runs, "warmup_runs": warmup_runs, "min_secs": min_secs}
    _check_inputs(model_path, settings, counts, taskset, timeout_s)
    adb_path = adb_lib.find_adb(adb)
    chosen = adb_lib.select_device(adb_lib.list_devices(adb_path, timeout_s), serial)
    client = adb_lib.Adb(adb_path, chosen.serial, timeout_s)
    info = device_lib.describe(client)
    binary = _binary(benchmark_binary, info)
    session = _Session(client, info, model_path, binary, taskset=taskset,
                       profiling=enable_op_profiling, output_dir=output_dir)
    results = session.run_all(settings, counts)
    if output_dir is not None:
        write_results(results, output_dir)
    return results


def _settings(threads, delegates):
    threads = (threads,) if isinstance(threads, int) else tuple(threads)
    delegates = (delegates,) if isinstance(delegates, str) else tuple(delegates)
    if not threads or not delegates:
        raise ValueError("threads and delegates must each name at least one setting, e.g. "
                         "threads=(1, 4), delegates=('xnnpack',)")
    unknown = [d for d in delegates if d not in DELEGATES]
    if unknown:
        raise ValueError(f"unknown delegates {unknown}; choose from {', '.join(DELEGATES)}")
    return [(t, d) for t in threads for d in delegates]


def _check_inputs(model_path, settings, counts, taskset, timeout_s):
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"no model file at {os.fspath(model_path)!r}; pass the path of "
                                "a .tflite file on this machine")
    if taskset is not None and not re.fullmatch(r"(0x)?0*[1-9a-fA-F][0-9a-fA-F]*", str(taskset)):
        raise ValueError(f"taskset={taskset!r}: pass a hex CPU mask such as f0 (CPUs 4-7, the "
                         "big cores on many phones; see /sys/devices/system/cpu/cpu*/cpufreq/"
                         "cpuinfo_max_freq)")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    for threads, delegate in settings:  # bad counts fail here, not after the push
        build_args("m.tflite", num_threads=threads, **counts, **DELEGATES[delegate])


def _binary(benchmark_binary, info):
    """The local benchmark_model to push: the one given, else the cached prebuilt for the ABI."""
    if benchmark_binary is not None:
        path = os.fspath(benchmark_binary)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"benchmark_binary {path!r} does not exist; pass a "
                                    "benchmark_model built for the phone's ABI")
        return path
    if not info.get("abi"):
        raise AdbError(f"{info['serial']} reports no CPU ABI (ro.product.cpu.abilist, "
                       "ro.product.cpu.abi); pass --benchmark_binary PATH for it")
    return os.fspath(fetch_benchmark_tool(platform_for_abi(info["abi"])))


class _Session:
    """The per-run folder on the device and everything run in it."""

    def __init__(self, client, info, model_path, binary, *, taskset, profiling, output_dir):
        self.client, self.info, self.binary, self.taskset = client, info, binary, taskset
        self.model_path = os.fspath(model_path)
        self.run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        self.remote_dir = f"{REMOTE_ROOT}/{self.run_id}"
        self.remote_binary = f"{self.remote_dir}/benchmark_model"
        # The model keeps its own name (every command quotes it), in a folder of its own so
        # that no name can collide with the binary's or the CSVs'.
        self.remote_model = f"{self.remote_dir}/model/{os.path.basename(self.model_path)}"
        self.staging = tempfile.mkdtemp(prefix="android_bench-") if profiling else None
        self.output_dir = output_dir
        self.thermal = device_lib.thermal_warning(info)

    def run_all(self, settings, counts):
        """A result per setting; the remote folder is removed whatever happens."""
        try:
            self._prepare()
            results = [self._bench(threads, delegate, counts) for threads, delegate in settings]
        except BaseException as err:
            # A timed-out or interrupted tool may still run on the phone: stop it too.
            self._cleanup(err, stop_tool=isinstance(err, (AdbTimeout, KeyboardInterrupt)))
            if self.staging:
                shutil.rmtree(self.staging, ignore_errors=True)
            raise
        self._cleanup(None)
        if self.staging and self.output_dir is not None:
            publish_files(self.staging, self.output_dir)
        return results

    def _prepare(self):
        self.client.shell(quote(["mkdir", "-p", os.path.dirname(self.remote_model)]))
        self.client.transfer("push", self.binary, self.remote_binary)
        self.client.transfer("push", os.path.abspath(self.model_path), self.remote_model)
        binary = quote([self.remote_binary])
        if self.client.shell(f"chmod 755 {binary} && test -x {binary}", check=False).status:
            raise self._not_executable()

    def _not_executable(self, output=""):
        wrong_cpu = re.search(r"^.*(?:not executable: \d+-bit ELF|exec format error).*$", output,
                              re.I | re.M)
        if wrong_cpu:
            abi = self.info.get("abi")
            return NotExecutable(
                f"{self.binary} is not a program for the CPU of {self.client.serial} ({abi}): "
                f"the device says {wrong_cpu[0].strip()!r}. Pass a benchmark_model built for "
                f"{abi} with --benchmark_binary (benchmark_binary=).")
        return NotExecutable(
            f"{self.remote_binary} cannot be executed on {self.client.serial} (Permission "
            f"denied after chmod 755): the storage under {REMOTE_ROOT} is mounted noexec on "
            "this device. Check `adb shell mount`; /data/local/tmp is executable on stock "
            "Android, so a custom ROM or a device policy is likely in the way.")

    def _bench(self, threads, delegate, counts):
        csv = f"{self.remote_dir}/op_profile-t{threads}-{delegate}.csv" if self.staging else None
        args = build_args(self.remote_model, num_threads=threads, **counts, **DELEGATES[delegate],
                          enable_op_profiling=bool(csv), profiling_output_csv_file=csv)
        command = quote((["taskset", self.taskset] if self.taskset else [])
                        + [self.remote_binary, *args])
        logger.info("benchmarking %s on %s: threads=%d delegate=%s",
                    os.path.basename(self.model_path), self.client.serial, threads, delegate)
        pid_file = quote([f"{self.remote_dir}/benchmark.pid"])
        # In the background so its pid can be recorded (to stop it after a timeout).
        result = self.client.shell(f"{command} 2>&1 & echo $! > {pid_file}; wait $!",
                                   check=False)
        parsed = self._parse(result, threads, delegate)
        extra = self._extra(parsed, threads, delegate, command)
        if csv:
            extra["op_profile_csv"], problem = self._pull_csv(csv, threads, delegate)
            if problem:
                extra["warnings"] = [*extra.get("warnings", []), problem]
        return dataclasses.replace(
            parsed, model_path=self.model_path, target=f"adb:{self.client.serial}",
            tool="benchmark_model", runtime="benchmark_model", threads=threads, delegate=delegate,
            num_runs=counts["num_runs"], warmup_runs=counts["warmup_runs"],
            device=copy.deepcopy(self.info), extra=extra).stamped()

    def _extra(self, parsed, threads, delegate, command):
        """`BenchResult.extra`: the parser's notes, how it was run, and what looked wrong."""
        extra = {**parsed.extra, "remote_command": command, "run_id": self.run_id,
                 "remote_dir": self.remote_dir, "benchmark_binary": self.binary}
        if self.taskset:
            extra["taskset"] = self.taskset
        if parsed.delegate not in (None, delegate):
            extra["reported_delegate"] = parsed.delegate  # what the tool says it used
        if parsed.threads not in (None, threads):
            extra["reported_threads"] = parsed.threads
        if self.thermal:
            extra["warnings"] = [*extra.get("warnings", []), self.thermal]
        return extra

    def _parse(self, result, threads, delegate):
        """The parsed output; raises if the tool failed, whatever adb's exit status was."""
        where = f"on {self.client.serial} (threads={threads}, delegate={delegate})"
        if result.status == 126:  # the shell's "found but cannot execute"
            raise self._not_executable(result.output)
        try:
            parsed = parse(result.output)
        except BenchmarkFailed as err:
            raise BenchmarkFailed(f"{err.reason} {where}, exit status {result.status}",
                                  err.tail) from None
        except UnparseableOutput:
            if result.status == 0:
                raise
            parsed = None
        if result.status != 0:
            how = (f"was killed by signal {result.status - 128} (out of memory?)"
                   if result.status > 128 else f"exited with status {result.status}")
            raise BenchmarkFailed(f"benchmark_model {how} {where}", tail(result.output))
        return parsed

    def _pull_csv(self, remote, threads, delegate):
        """(final local path or None, warning or None) for one op-profiling CSV."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(
            os.path.basename(self.model_path))[0])
        name = f"{stem}-{self.run_id}-t{threads}-{delegate}.csv"
        try:
            self.client.transfer("pull", remote, os.path.join(self.staging, name))
        except RemoteCommandFailed as err:  # the tool wrote no CSV; a lost device still raises
            return None, f"no op-profiling CSV pulled: {err}"
        return os.path.join(self.output_dir or self.staging, name), None

    def _cleanup(self, error, stop_tool=False):
        """Removes the run folder; a failure to do so is noted on `error` or logged."""
        folder = quote([self.remote_dir])
        command = f"rm -rf {folder}"
        if stop_tool:
            pid = quote([f"{self.remote_dir}/benchmark.pid"])
            # Only a process whose command line names this run's folder is ours to kill.
            command = (f"if [ -f {pid} ]; then p=$(cat {pid}); grep -qF {folder} "
                       f"/proc/$p/cmdline 2>/dev/null && kill -9 $p; fi; {command}")
        # A second Ctrl-C while cleaning up after a failure must not hide the failure itself.
        swallowed = (AdbError, KeyboardInterrupt) if error is not None else AdbError
        try:
            self.client.shell(command, timeout_s=min(60, self.client.timeout_s))
        except swallowed as err:
            note = (f"could not remove {self.remote_dir} on {self.client.serial} ({err}); "
                    f"remove it with: adb -s {self.client.serial} shell rm -rf {folder}")
            if error is not None:
                error.add_note(note)
            else:
                logger.warning(note)
