"""The target "local": this machine. Also `execute`, how any local command is run and stopped.

Files are already here, so `put` returns them in place (the tool reads the user's model, and the
command line shows its real path); the run folder is a temporary folder for what a tool writes.
"""

import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from tfkd.bench import fetch as fetch_tool
from tfkd.bench.results import host_description
from tfkd.bench.targets import Completed, cleaning_up

FORMS = ("'local'",)
# "litert" runs in this process; "litert-benchmark" is LiteRT's command, whose CPU accelerator
# is XNNPACK; NNAPI exists on Android only.
TOOLS = {"litert": ("xnnpack", "none"), "litert-benchmark": ("xnnpack",),
         "benchmark_model": ("xnnpack", "gpu", "none")}
OPTIONS = ()


class CommandTimeout(RuntimeError):
    """A local command ran past its timeout and was killed; `output` is what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class CommandFailed(RuntimeError):
    """A local command could not start, or ran and failed (`status`, `output`)."""

    def __init__(self, message, output="", status=None):
        super().__init__(message)
        self.output, self.status = output, status


def matches(target):
    """True for "local"."""
    return target == "local"


def parse(target):
    """Checks the target string; "local" is the only form."""
    if target != "local":
        raise ValueError(f"target={target!r} is not 'local'")


def open(target="local", *, timeout_s=600):  # noqa: A001 - the contract's name
    """A context manager yielding this machine as a `Device`; its run folder is removed after."""
    parse(target)
    return cleaning_up(Device(timeout_s))


class Device:
    """This machine, with a temporary run folder."""

    name = "local"

    def __init__(self, timeout_s=600):
        self.timeout_s = timeout_s
        self.folder = tempfile.mkdtemp(prefix="tfkd-local-")
        self.warnings, self.extra, self.python = [], {}, sys.executable

    def describe(self):
        """`tfkd.bench.results.host_description()`."""
        return host_description()

    def benchmark_platform(self):
        """The prebuilt platform for this machine's CPU."""
        return fetch_tool.platform_for_machine(platform.machine())

    def put(self, files, executable=()):
        """The files in place (nothing to copy); checks that `executable` ones can run."""
        paths = {name: os.path.abspath(local) for name, local in files.items()}
        for name in executable:
            if not os.access(paths[name], os.X_OK):
                raise PermissionError(f"{paths[name]} is not executable; run chmod +x "
                                      f"{shlex.quote(paths[name])}")
        return paths

    def run(self, argv, timeout_s=None):
        """Runs argv here in the run folder; see `execute`."""
        argv = [os.fspath(word) if isinstance(word, os.PathLike) else str(word) for word in argv]
        status, output = execute(argv, timeout_s or self.timeout_s, cwd=self.folder)
        return Completed(status, output, shlex.join(argv))

    def fetch(self, remote, local):
        """Copies a file of the run folder to `local`."""
        shutil.copyfile(remote, local)

    def error(self, message, output="", status=None):
        """A `CommandFailed`."""
        return CommandFailed(message, output, status)

    def cleanup(self, error=None):
        """Removes the run folder. Nothing can still run: `execute` kills on every way out."""
        shutil.rmtree(self.folder, ignore_errors=True)


def execute(argv, timeout_s, cwd=None):
    """Runs argv (no shell): (exit status, stdout and stderr merged, decoded).

    The status is 128+N when a signal N killed it, as a shell reports it. The command gets a
    session of its own, so a timeout or Ctrl-C kills it and anything it started (a wrapper
    script's children would otherwise keep the pipe open and hang us).

    Raises:
        CommandTimeout: it ran past `timeout_s` and was killed.
        CommandFailed: it could not start (not found, not a program for this CPU).
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    except OSError as error:
        raise CommandFailed(f"cannot run {argv[0]} on this machine: {error}; is it a program "
                            "for this CPU and OS?") from None
    with proc:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            out = _kill(proc)
            raise CommandTimeout(f"`{os.path.basename(argv[0])}` did not finish within "
                                 f"{timeout_s:g} s on this machine and was killed; raise "
                                 "timeout_s or lower num_runs/min_secs",
                                 out.decode("utf-8", "replace")) from None
        except BaseException:  # Ctrl-C: leave nothing running
            _kill(proc)
            raise
    code = proc.returncode
    return (128 - code if code < 0 else code), out.decode("utf-8", "replace")


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate()
    return out or b""


def status_text(status):
    """"exit status 3", or "killed by SIGKILL (out of memory?)" for a status above 128."""
    if status <= 128:
        return f"exit status {status}"
    try:
        name = signal.Signals(status - 128).name
    except ValueError:
        return f"killed by signal {status - 128}"
    return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
