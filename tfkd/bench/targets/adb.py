"""The target "adb" / "adb:SERIAL": an Android phone over adb (`python -m android_bench`).

Files go to a run folder of their own under /data/local/tmp/tfkd (the one place the shell user
may write and execute on stock Android), which `cleanup` always removes, whatever happened
(tool failure, timeout, lost device, Ctrl-C), killing a command still running there first.
Every remote word is quoted with `shlex.quote` (see `adb_client`). `taskset=` pins every command
`run` runs to a CPU mask.
"""

import logging
import os
import re
import secrets
import time

from tfkd.bench import fetch as fetch_tool
from tfkd.bench.targets import Completed, adb_client, adb_device, cleaning_up
from tfkd.bench.targets.adb_client import quote
from tfkd.bench.targets.adb_errors import AdbError, NotExecutable, RemoteCommandFailed

FORMS = ("'adb' (the only phone attached)", "'adb:SERIAL'")
TOOLS = {"benchmark_model": ("xnnpack", "gpu", "nnapi", "none")}
OPTIONS = ("adb", "taskset")
REMOTE_ROOT = "/data/local/tmp/tfkd"
_CLEANUP_TIMEOUT_S = 60
_CANNOT_EXECUTE = 126  # the shell's "found but cannot execute"

logger = logging.getLogger("tfkd.bench")


def matches(target):
    """True for "adb" and "adb:..."."""
    return target == "adb" or target.startswith("adb:")


def parse(target):
    """The serial of "adb:SERIAL", or None for "adb" ($ANDROID_SERIAL, else the only phone)."""
    if not matches(target):
        raise ValueError(f"target={target!r} is not an adb target; write 'adb' or 'adb:SERIAL'")
    serial = target[len("adb:"):]
    if serial.startswith("-") or re.search(r"\s", serial):
        raise ValueError(f"target={target!r}: bad serial {serial!r}; write 'adb:SERIAL' with "
                         "the serial `adb devices` shows")
    return serial or None


def open(target, *, timeout_s=300, adb=None, taskset=None):  # noqa: A001 - the contract's name
    """A context manager yielding the phone as a `Device` (see the package docstring).

    Args:
        target: "adb" or "adb:SERIAL".
        timeout_s: limit in seconds for each adb command.
        adb: the adb executable; default `$ADB`, else `adb` on PATH.
        taskset: a hex CPU mask (e.g. "f0") to pin each command `run` runs to those cores.

    Raises:
        ValueError: a bad taskset (before adb is run).
        AdbError: adb missing; no, several or unready devices.
    """
    serial = parse(target)
    if taskset is not None and not re.fullmatch(r"(0x)?0*[1-9a-fA-F][0-9a-fA-F]*", str(taskset)):
        raise ValueError(f"taskset={taskset!r}: pass a hex CPU mask such as f0 (CPUs 4-7, the "
                         "big cores on many phones; see /sys/devices/system/cpu/cpu*/cpufreq/"
                         "cpuinfo_max_freq)")
    path = adb_client.find_adb(adb)
    chosen = adb_client.select_device(adb_client.list_devices(path, timeout_s), serial)
    return cleaning_up(Device(adb_client.Adb(path, chosen.serial, timeout_s), taskset))


class Device:
    """One phone and a run folder on it (created by the first `put`)."""

    python = None  # no Python on a stock phone

    def __init__(self, client, taskset=None):
        self.client, self.taskset = client, taskset
        self.name = f"adb:{client.serial}"
        self.run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        self.folder = f"{REMOTE_ROOT}/{self.run_id}"
        self.extra = {"run_id": self.run_id, "remote_dir": self.folder,
                      **({"taskset": taskset} if taskset else {})}
        self._info = adb_device.describe(client)  # one round trip, before anything is pushed
        thermal = adb_device.thermal_warning(self._info)
        self.warnings = [thermal] if thermal else []
        self._made = False
        self._executables = {}  # remote path -> local path

    def describe(self):
        """Model, Android version, ABI, SoC, CPUs, governors, battery temperature."""
        return self._info

    def benchmark_platform(self):
        """The prebuilt for the phone's ABI; ValueError for an ABI without one."""
        if not self._info.get("abi"):
            raise AdbError(f"{self.client.serial} reports no CPU ABI (ro.product.cpu.abilist, "
                           "ro.product.cpu.abi); pass --benchmark_binary PATH for it")
        return fetch_tool.platform_for_abi(self._info["abi"])

    def put(self, files, executable=()):
        """`adb push` each file into the run folder; chmod 755 and check the executables."""
        if not self._made:
            self._made = True  # set first: a mkdir that timed out may still have made it
            self.client.shell(quote(["mkdir", "-p", self.folder]))
        paths = {}
        for name, local in files.items():
            paths[name] = f"{self.folder}/{name}"
            self.client.transfer("push", os.path.abspath(local), paths[name])
        for name in executable:
            binary = quote([paths[name]])
            if self.client.shell(f"chmod 755 {binary} && test -x {binary}", check=False).status:
                raise self._not_executable(files[name], paths[name])
            self._executables[paths[name]] = os.fspath(files[name])
        return paths

    def run(self, argv, timeout_s=None):
        """Runs argv in the background so that its pid is on record for `cleanup`."""
        command = quote((["taskset", self.taskset] if self.taskset else [])
                        + [str(word) for word in argv])
        pid_file = quote([f"{self.folder}/benchmark.pid"])
        result = self.client.shell(f"{command} 2>&1 & echo $! > {pid_file}; wait $!",
                                   timeout_s=timeout_s, check=False)
        program = str(argv[0])
        if result.status == _CANNOT_EXECUTE and program in self._executables:
            raise self._not_executable(self._executables[program], program, result.output)
        return Completed(result.status, result.output, command)

    def fetch(self, remote, local):
        """`adb pull`; FileNotFoundError if the device has no such file."""
        try:
            self.client.transfer("pull", remote, local)
        except RemoteCommandFailed as error:  # a lost device raises DeviceLost instead
            raise FileNotFoundError(str(error)) from None

    def error(self, message, output="", status=None):
        """A `RemoteCommandFailed`."""
        return RemoteCommandFailed(message)

    def _not_executable(self, local, remote, output=""):
        wrong_cpu = re.search(r"^.*(?:not executable: \d+-bit ELF|exec format error).*$", output,
                              re.I | re.M)
        if wrong_cpu:
            abi = self._info.get("abi")
            return NotExecutable(
                f"{local} is not a program for the CPU of {self.client.serial} ({abi}): the "
                f"device says {wrong_cpu[0].strip()!r}. Pass a benchmark_model built for {abi} "
                "with --benchmark_binary (benchmark_binary=).")
        return NotExecutable(
            f"{remote} cannot be executed on {self.client.serial} (Permission denied after "
            f"chmod 755): the storage under {REMOTE_ROOT} is mounted noexec on this device. "
            "Check `adb shell mount`; /data/local/tmp is executable on stock Android, so a "
            "custom ROM or a device policy is likely in the way.")

    def cleanup(self, error=None):
        """Removes the run folder; a failure to do so is noted on `error` or logged."""
        if not self._made:
            return
        folder = quote([self.folder])
        command = f"rm -rf {folder}"
        if error is not None:
            pid = quote([f"{self.folder}/benchmark.pid"])
            # Only a process whose command line names this run's folder is ours to kill.
            command = (f"if [ -f {pid} ]; then p=$(cat {pid}); grep -qF {folder} "
                       f"/proc/$p/cmdline 2>/dev/null && kill -9 $p; fi; {command}")
        # A second Ctrl-C while cleaning up after a failure must not hide the failure itself.
        swallowed = (AdbError, KeyboardInterrupt) if error is not None else AdbError
        try:
            self.client.shell(command, timeout_s=min(_CLEANUP_TIMEOUT_S, self.client.timeout_s))
        except swallowed as err:
            note = (f"could not remove {self.folder} on {self.client.serial} ({err}); "
                    f"remove it with: adb -s {self.client.serial} shell rm -rf {folder}")
            if error is not None:
                error.add_note(note)
            else:
                logger.warning(note)
