"""Commands on, and copies to, a Linux board through the system OpenSSH client (`ssh`, `scp`).

Each call is one `ssh` or `scp` process started from an argv list (never a local shell), with
`BatchMode=yes` so a missing key fails at once instead of waiting at a password prompt. The
remote command goes to ssh as ONE string that the caller has already quoted word by word with
`shlex.quote`: ssh joins its arguments with spaces and the board's login shell parses the result
again, so anything not quoted there would run. The login shell must be POSIX (sh, dash, bash,
zsh, ash), as on Raspberry Pi OS and every mainstream distribution.

Inside `with connection.shared(timeout_s) as shared:` every ssh and scp goes through one
authenticated connection (OpenSSH multiplexing: ControlMaster), so a board that needs seconds
per handshake (a Pi Zero) pays that once per run instead of once per command.

A command that runs past its timeout has its local `ssh` killed and raises `SshTimeout`; what it
started on the board is the caller's to stop (`tfkd.bench.targets.ssh` does it). Exit status 255
means ssh itself failed; its message is turned into an error that says what to do.
"""

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from typing import Optional

from tfkd.bench.targets.ssh_errors import (RemoteCommandFailed, SshError, SshNotInstalled,
                                           SshTimeout, classify, tail)

# ssh returns the remote command's status, or 255 when it could not run it at all.
SSH_FAILED = 255
# What OpenSSH 9's scp prints when the server has no SFTP subsystem: "subsystem request failed"
# on its own connection, only "scp: Connection closed" over a shared one (the master logs the
# rest). A connection that really broke fails the legacy retry too, and says so then.
_NO_SFTP = re.compile(r"subsystem request failed|sftp-server.*not found|^\S*scp: Connection "
                      r"closed", re.I | re.M)
logger = logging.getLogger("tfkd.bench")
# Seconds an idle shared connection outlives its last command if we never get to close it.
_CONTROL_PERSIST_S = 60
_DRAIN_S = 1


@dataclasses.dataclass(frozen=True)
class SshConnection:
    """How to reach one board; each command is one ssh process (shared login: see `shared`).

    Attributes:
        host: host name or IP address (IPv6 without brackets).
        user: login name; None lets ssh choose (config file, else the local user name).
        port: TCP port; None lets ssh choose (config file, else 22).
        identity_file: private key to offer (with IdentitiesOnly=yes, so only it is offered).
        config_file: ssh config file (`-F`); None reads ~/.ssh/config as ssh does.
        ssh_options: further 'Key=Value' ssh options (`-o`), e.g. "UserKnownHostsFile=...".
        connect_timeout_s: seconds ssh waits for the TCP connection (ConnectTimeout).
        control_path: the socket of a shared connection (set by `shared`), or None.
    """

    host: str
    user: Optional[str] = None
    port: Optional[int] = None
    identity_file: Optional[str] = None
    config_file: Optional[str] = None
    ssh_options: tuple = ()
    connect_timeout_s: float = 10
    control_path: Optional[str] = None
    # What this run learnt about the board: {"legacy_scp": True} once its sshd lacked SFTP.
    learned: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def dest(self):
        """user@host as a person would type it to ssh."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def _options(self, master=False):
        """Options common to ssh and scp. ssh keeps the first value it is given for an option,
        so these come before the user's ssh_options and cannot be overridden by them."""
        opts = ["-F", os.fspath(self.config_file)] if self.config_file else []
        opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={_whole_seconds(self)}"]
        if self.control_path:
            opts += ["-o", f"ControlPath={self.control_path}", "-o",
                     "ControlMaster=yes" if master else "ControlMaster=no"]
            opts += ["-o", f"ControlPersist={_CONTROL_PERSIST_S}"] if master else []
        if self.identity_file:
            opts += ["-i", os.fspath(self.identity_file), "-o", "IdentitiesOnly=yes"]
        for option in self.ssh_options:
            opts += ["-o", option]
        return opts

    def ssh_argv(self, command, *, flags=("-T",), master=False):
        """The argv that runs the (already quoted) `command` string on the board."""
        argv = [_client("ssh"), *flags, *self._options(master)]
        argv += ["-p", str(self.port)] if self.port else []
        argv += ["-l", self.user] if self.user else []
        return [*argv, "--", self.host, *([command] if command is not None else [])]

    @contextlib.contextmanager
    def shared(self, timeout_s):
        """Logs in once and yields a copy of this connection whose commands all reuse it.

        Raises:
            SshError and subclasses: the login failed; the message says what to do.
        """
        # /tmp, not $TMPDIR: a socket path must stay under ~100 bytes and contain no spaces.
        folder = tempfile.mkdtemp(prefix="tfkdssh", dir="/tmp" if os.path.isdir("/tmp")
                                  else None)
        shared = dataclasses.replace(self, control_path=os.path.join(folder, "control"))
        try:
            shared._start_master(os.path.join(folder, "master.log"), timeout_s)
            yield shared
        finally:
            with contextlib.suppress(SshError, OSError, subprocess.TimeoutExpired):
                subprocess.run(shared.ssh_argv(None, flags=("-O", "exit")), timeout=10,
                               stdin=subprocess.DEVNULL, capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)

    def _start_master(self, log_path, timeout_s):
        """Starts the shared connection; ssh -f returns once logged in, leaving it running."""
        argv = self.ssh_argv(None, flags=("-f", "-N", "-T"), master=True)
        # stderr goes to a file: the backgrounded master would hold a pipe open forever.
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = None
        except BaseException:
            _kill(proc)
            raise
        with open(log_path, "rb") as log:
            err = _text(log.read())
        if code is None:
            raise SshTimeout(f"logging in to {self.dest} did not finish within timeout_s="
                             f"{timeout_s} s, so its ssh was killed", tail(err))
        if code != 0:
            raise self._ssh_failure(err, "")

    def scp_argv(self, sources, remote_dir):
        """The argv that copies local `sources` into the existing `remote_dir` on the board.

        `remote_dir` must need no quoting: legacy scp has a remote shell read it, SFTP-mode scp
        (the default since OpenSSH 9.0) does not, and a name without specials means the same in
        both. Sources must be absolute so that a ':' in them cannot be read as host:path.
        """
        return [*self._scp_options(), "--", *sources, f"{self._scp_host()}:{remote_dir}/"]

    def _scp_options(self):
        # -O: the legacy protocol, for a board whose sshd has no SFTP subsystem (`_copy`).
        legacy = ["-O"] if self.learned.get("legacy_scp") else []
        argv = [_client("scp"), "-B", *legacy, *self._options()]
        argv += ["-P", str(self.port)] if self.port else []
        return argv + (["-o", f"User={self.user}"] if self.user else [])

    def _scp_host(self):
        return f"[{self.host}]" if ":" in self.host else self.host

    def run(self, command, timeout_s, *, what="command"):
        """Runs `command` on the board: (exit status, stdout, stderr), decoded as UTF-8.

        Raises:
            SshError and subclasses: ssh failed (exit status 255) or `timeout_s` passed.
        """
        return self._execute(self.ssh_argv(command), timeout_s, what)

    def push(self, files, remote_dir, timeout_s):
        """Copies {remote name: local path} into `remote_dir` with one scp.

        The remote names are fixed and safe; the local files are linked under them in a private
        staging folder, so no local file name ever reaches the board.
        """
        with tempfile.TemporaryDirectory(prefix="tfkdstage") as stage:
            sources = []
            for name, local in files.items():
                link = os.path.join(os.path.abspath(stage), name)
                os.symlink(os.path.abspath(local), link)  # scp copies what a link points to
                sources.append(link)
            code, out, err = self._copy(lambda: self.scp_argv(sources, remote_dir), timeout_s,
                                        "copying files")
        if code != 0:
            raise RemoteCommandFailed(f"scp could not copy {', '.join(files)} to {remote_dir} on "
                                      f"{self.host} (exit status {code})", tail(err), out, code)

    def pull(self, remote_path, local_path, timeout_s):
        """Copies the board's `remote_path` (a name that needs no quoting, as in `scp_argv`) to
        `local_path` with one scp.

        Raises:
            FileNotFoundError: scp failed (typically: no such file on the board).
        """
        code, out, err = self._copy(
            lambda: [*self._scp_options(), "--", f"{self._scp_host()}:{remote_path}",
                     os.path.abspath(local_path)], timeout_s, "copying a file back")
        if code != 0:
            raise FileNotFoundError(f"scp could not copy {remote_path} from {self.host} (exit "
                                    f"status {code}): {tail(err, 3)}")

    def _copy(self, make_argv, timeout_s, what):
        """(exit status, stdout, stderr) of one scp; retried once with the legacy protocol
        (`scp -O`) when the board's sshd has no SFTP subsystem, which OpenSSH 9's scp needs by
        default (Dropbear and some stripped-down images lack it)."""
        code, out, err = self._execute(make_argv(), timeout_s, what, scp=True)
        if code != 0 and not self.learned.get("legacy_scp") and _NO_SFTP.search(err):
            logger.info("%s offers no SFTP subsystem; copying with scp -O (legacy protocol)",
                        self.host)
            self.learned["legacy_scp"] = True
            code, out, retry_err = self._execute(make_argv(), timeout_s, what, scp=True)
            err = (f"{err.strip()}\n(the board's sshd has no SFTP subsystem; retried with "
                   f"scp -O, the legacy protocol:)\n{retry_err}") if code else retry_err
        if code == SSH_FAILED:
            raise self._ssh_failure(err, out)
        return code, out, err

    def _execute(self, argv, timeout_s, what, scp=False):
        # A session of its own: Ctrl-C in the terminal then reaches only us, so the caller can
        # still clean up on the board over a new connection before it gives up.
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True) as proc:
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                out, err = _kill(proc, communicate=True)
                raise SshTimeout(f"{what} on {self.host} did not finish within timeout_s="
                                 f"{timeout_s} s, so its ssh was killed; raise timeout_s (or "
                                 "lower num_runs/min_secs) if the board is just slow",
                                 tail(_text(err)), _text(out)) from None
            except BaseException:
                _kill(proc)
                raise
        out, err = _text(out), _text(err)
        if proc.returncode == SSH_FAILED and not scp:  # `_copy` reads scp's failures first
            raise self._ssh_failure(err, out)
        return proc.returncode, out, err

    def _ssh_failure(self, err, out):
        port = self.port or 22
        manual_args = " ".join(([f"-p {self.port}"] if self.port else []) + [self.dest])
        fields = {"host": self.host, "dest": self.dest, "port": port,
                  "port_opt": f" -p {self.port}" if self.port else "",
                  "connect_timeout_s": self.connect_timeout_s, "manual_args": manual_args,
                  "manual": f"ssh {manual_args}"}
        return classify(err, out, fields)


def _whole_seconds(connection):
    # ConnectTimeout takes whole seconds; round up so 0.5 does not become "no timeout" (0).
    return max(1, int(-(-connection.connect_timeout_s // 1)))


def _client(name):
    path = shutil.which(name)
    if path is None:
        raise SshNotInstalled(f"the OpenSSH client ({name}) is not installed here: apt install "
                              "openssh-client (Debian/Ubuntu), or put ssh and scp on PATH")
    return path


def _kill(proc, communicate=False):
    """Kills ssh and anything it started (a ProxyCommand); returns what it printed.

    A client of a shared connection hands its stdout and stderr to the master, which keeps
    them open while the remote command lives on: so the output is read for a moment only.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not communicate:
        return proc.wait()
    try:
        return proc.communicate(timeout=_DRAIN_S)
    except subprocess.TimeoutExpired:
        return b"", b"(the output was lost when ssh was killed)"


def _text(data):
    return (data or b"").decode("utf-8", "replace")
