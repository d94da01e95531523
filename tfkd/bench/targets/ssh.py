"""The target "ssh:user@host[:port]": a Raspberry Pi or any Linux board over ssh.

Over one ssh login (a shared connection): one command creates a private folder (`mktemp -d
/tmp/tfkd-XXXXXX`: under /tmp, so even a crash leaves nothing after a reboot) and describes the
board, one scp copies into it, one command runs per setting, and one removes the folder, also
after a failure, a timeout or Ctrl-C (killing a command still running). Files are copied under
the fixed names the drivers give (`model.tflite`, ...), so no local file name reaches a remote
shell. Every other word is quoted with `shlex.quote`.

Authentication is by key only (BatchMode=yes) and host keys are checked as ssh always does:
to skip the check, pass ssh_options=("StrictHostKeyChecking=accept-new",) knowingly.
"""

import contextlib
import os
import re
import shlex
import warnings

from tfkd.bench import fetch as fetch_tool
from tfkd.bench.targets import Completed, cleaning_up, ssh_device
from tfkd.bench.targets.ssh_connection import SshConnection
from tfkd.bench.targets.ssh_errors import RemoteCommandFailed, SshError, tail

FORMS = ("'ssh:user@host[:port]'",)
TOOLS = {"litert": ("xnnpack", "none"), "benchmark_model": ("xnnpack", "gpu", "none")}
OPTIONS = ("identity_file", "config_file", "ssh_options", "connect_timeout_s", "python")
_CLEANUP_TIMEOUT_S = 30
_NOT_FOUND, _NOT_EXECUTABLE = 127, 126


def matches(target):
    """True for "ssh:..."."""
    return target.startswith("ssh:")


def parse(target):
    """Checks the target string; see `parse_target`."""
    parse_target(target)


def parse_target(target):
    """Splits "ssh:[user@]host[:port]" into (user or None, host, port or None).

    IPv6 addresses go in brackets: "ssh:pi@[fe80::1]:2222". "ssh://..." is accepted too.

    Raises:
        ValueError: the target is not of that form; the message shows the form.
    """
    form = "write it as 'ssh:user@host', 'ssh:host:2222' or 'ssh:user@[::1]:2222'"
    if not isinstance(target, str) or not target.startswith("ssh:"):
        raise ValueError(f"target={target!r} is not an ssh target; {form}")
    rest = target[len("ssh:"):].removeprefix("//")
    user, at, hostport = rest.rpartition("@")
    if at and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?", user):
        raise ValueError(f"target={target!r}: bad user name {user!r}; {form}")
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\](?::(\d*))?|([^:\[\]]*)(?::(\d*))?", hostport)
    if not match:
        raise ValueError(f"target={target!r}: cannot read host[:port] from {hostport!r} (IPv6 "
                         f"addresses need brackets); {form}")
    host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
    if not host or host.startswith("-") or not re.fullmatch(r"[\w.:%-]+", host):
        raise ValueError(f"target={target!r}: bad host name {host!r}; {form}")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"target={target!r}: the port must be a number from 1 to 65535; {form}")
    return user or None, host, int(port) if port else None


@contextlib.contextmanager
def open(target, *, timeout_s=300, identity_file=None, config_file=None,  # noqa: A001
         ssh_options=(), connect_timeout_s=10, python="python3"):
    """A context manager yielding the board as a `Device` (see the package docstring).

    Args:
        target: "ssh:[user@]host[:port]"; recorded as given in `BenchResult.target`.
        timeout_s: limit for each remote command and copy.
        identity_file: private key to log in with (only it is offered).
        config_file: ssh config file to read instead of ~/.ssh/config (`-F`; os.devnull: none).
        ssh_options: further 'Key=Value' ssh options, e.g. ("UserKnownHostsFile=/path",).
        connect_timeout_s: seconds to wait for the connection.
        python: the board's Python, for tool "litert": a command on its PATH or a path
            ("~/venv/bin/python" works).

    Raises:
        ValueError: a bad option (before anything is contacted).
        SshError and subclasses: the board could not be reached; the message says what to do.
    """
    _check_options(python, connect_timeout_s, ssh_options)
    user, host, port = parse_target(target)
    connection = SshConnection(host, user, port, identity_file, config_file, tuple(ssh_options),
                               connect_timeout_s)
    with connection.shared(timeout_s) as shared:
        info, run_dir = ssh_device.open_run_dir(shared, timeout_s)
        notes = ssh_device.throttle_warnings(info, host)
        with cleaning_up(Device(shared, target, run_dir, info, notes, timeout_s, python)) as dev:
            yield dev


class Device:
    """One board over a shared ssh connection, and its run folder."""

    def __init__(self, connection, target, folder, info, notes, timeout_s, python):
        self.connection, self.name, self.folder = connection, target, folder
        self.python, self.timeout_s, self.warnings = python, timeout_s, notes
        self.extra = {"host": connection.host, "remote_dir": folder}
        self._info = info
        self._executables = {}  # remote path -> local path

    def describe(self):
        """Board, CPU, OS, memory, governor, temperature and throttling, from one probe."""
        return self._info

    def benchmark_platform(self):
        """The prebuilt for the board's `uname -m` and userland; see `platform_for`."""
        return platform_for(self._info)

    def put(self, files, executable=()):
        """One scp into the run folder, then chmod +x of the executables."""
        self.connection.push(files, self.folder, self.timeout_s)
        paths = {name: f"{self.folder}/{name}" for name in files}
        if executable:
            words = quote_words(["chmod", "+x", *(paths[name] for name in executable)])
            code, _, err = self.connection.run(words, self.timeout_s, what="chmod")
            if code != 0:
                raise RemoteCommandFailed(f"cannot make {', '.join(executable)} executable in "
                                          f"{self.folder} on {self.connection.host}", tail(err),
                                          "", code)
            self._executables.update({paths[n]: os.fspath(files[n]) for n in executable})
        return paths

    def run(self, argv, timeout_s=None):
        """Runs argv in the run folder as its own process group leader (sshd makes the login
        shell one, and exec keeps its pid), recording that pid so that a timed-out command can
        be killed from another connection."""
        words = quote_words(argv)
        command = f"cd {shlex.quote(self.folder)} && echo $$ > pid && exec {words} 2>&1"
        program = str(argv[0])
        code, out, err = self.connection.run(command, timeout_s or self.timeout_s,
                                             what=os.path.basename(program))
        if code in (_NOT_FOUND, _NOT_EXECUTABLE) and program in self._executables:
            raise RemoteCommandFailed(
                f"{self._executables[program]} could not be started on {self.connection.host} "
                f"(exit status {code}): it is probably built for another CPU or OS than this "
                f"board's ({self._info.get('machine')}, {self._info.get('userland_bits')}-bit "
                "userland); pass benchmark_binary= one built for it", tail(out + err), out, code)
        return Completed(code, out + err, words)

    def fetch(self, remote, local):
        """One scp back; FileNotFoundError if it fails."""
        self.connection.pull(remote, local, self.timeout_s)

    def error(self, message, output="", status=None):
        """A `RemoteCommandFailed` with the output's last lines."""
        return RemoteCommandFailed(message, tail(output), output, status)

    def cleanup(self, error=None):
        """Removes the run folder; after an error, first kills a command still running in it.

        A pid is killed only if that process still works in the run folder, so a pid reused by
        an unrelated process since is left alone. A failure is a RuntimeWarning, not an error.
        """
        d = shlex.quote(self.folder)
        script = f"rm -rf -- {d}"
        if error is not None:
            script = (f"p=$(cat {d}/pid 2>/dev/null); case $p in ''|*[!0-9]*) ;; *) "
                      f"[ \"$(readlink /proc/$p/cwd)\" = {d} ] && kill -s KILL -- -$p "
                      f"2>/dev/null;; esac; {script}")
        try:
            code, _, err = self.connection.run(script, _CLEANUP_TIMEOUT_S,
                                               what="removing the run folder")
        except SshError as failure:
            code, err = None, str(failure)
        if code != 0:
            warnings.warn(f"could not remove {self.folder} on {self.connection.host} "
                          f"({tail(err, 3)}); remove it by hand: ssh {self.connection.dest} "
                          f"rm -rf {self.folder}", RuntimeWarning, stacklevel=3)


def platform_for(info):
    """The `tfkd.bench.fetch` platform for a board description (`uname -m`, userland bits)."""
    machine = info.get("machine") or ""
    if machine.lower() in ("aarch64", "arm64") and info.get("userland_bits") == 32:
        machine = "armv7l"  # a 64-bit kernel under a 32-bit userland (Raspberry Pi OS 32-bit)
    return fetch_tool.platform_for_machine(machine)


def quote_words(words):
    """One remote command line; "~/..." is left for the board's shell to expand."""
    return " ".join(map(_word, words))


def _word(word):
    word = str(word)
    if word.startswith("~/"):  # the board's home is known only there: its shell expands it
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def _check_options(python, connect_timeout_s, ssh_options):
    if not isinstance(python, str) or not python.strip():
        raise ValueError(f"python={python!r}; pass the board's Python command, e.g. 'python3'")
    if isinstance(connect_timeout_s, bool) or not isinstance(
            connect_timeout_s, (int, float)) or not connect_timeout_s > 0:
        raise ValueError(f"connect_timeout_s={connect_timeout_s!r}; pass a positive number of "
                         "seconds")
    if isinstance(ssh_options, str) or any(
            not isinstance(o, str) or not re.fullmatch(r"\w+[= ]\S.*", o) for o in ssh_options):
        raise ValueError(f"ssh_options={ssh_options!r}; pass a sequence of 'Key=Value' strings, "
                         "e.g. ('UserKnownHostsFile=/path/known_hosts',)")
