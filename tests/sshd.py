"""A throwaway OpenSSH server on 127.0.0.1 for the ssh tests: the "board" is this machine.

Everything lives in one temporary folder: the server's host key and config, a client key pair it
accepts and one it does not, and a known_hosts file holding the host key, so tests run with
host-key checking ON. Nothing touches the machine's own sshd, /etc/ssh or ~/.ssh (the one change
outside the folder: /run/sshd, sshd's privilege-separation folder, is created when running as
root and missing, as installing openssh-server would).
"""

import dataclasses
import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import time

# Where Debian and most distributions put sshd when it is not on PATH (it is in sbin).
_SSHD_PLACES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
_START_TIMEOUT_S = 10
# Options that not every sshd version knows; each is dropped if `sshd -t` rejects it.
# OpenSSH 9.8+ penalizes a source address after failed logins, which the bad-key test makes.
_OPTIONAL = ("PerSourcePenalties no",)


class Unavailable(Exception):
    """sshd cannot run here; the message is the reason to skip with."""


@dataclasses.dataclass
class Server:
    """A running sshd and the files a client needs to log in to it."""

    process: subprocess.Popen
    folder: pathlib.Path
    port: int
    user: str
    key: pathlib.Path  # accepted
    other_key: pathlib.Path  # not in authorized_keys
    known_hosts: pathlib.Path
    host: str = "127.0.0.1"

    def target(self, port=None):
        return f"ssh:{self.user}@{self.host}:{port or self.port}"

    def client_options(self, known_hosts=None):
        """ssh.run keywords that read no user config and trust only this server's key."""
        return {"identity_file": str(self.key), "config_file": os.devnull,
                "ssh_options": (f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                                "GlobalKnownHostsFile=/dev/null")}

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(folder, sftp=True):
    """Starts sshd on a free port with everything under `folder` (a fresh directory).

    With `sftp=False` the server offers no SFTP subsystem (as Dropbear and some stripped-down
    board images): OpenSSH 9's scp then fails unless told to use the legacy protocol (-O).

    Raises:
        Unavailable: sshd or ssh-keygen is missing, or sshd would not start.
    """
    folder = pathlib.Path(folder)
    sshd, keygen = _sshd(), shutil.which("ssh-keygen")
    if keygen is None or shutil.which("ssh") is None:
        raise Unavailable("ssh/ssh-keygen not installed: apt install openssh-client")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    for name in ("host_key", "id_test", "id_other"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(folder / name)], check=True, stdin=subprocess.DEVNULL)
    (folder / "authorized_keys").write_text((folder / "id_test.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(_config(folder, port, sftp))
    _drop_unknown_options(sshd, config)
    log = open(folder / "sshd.log", "wb")
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    _wait_for_port(process, port, folder / "sshd.log")
    host_key = (folder / "host_key.pub").read_text().split()[:2]
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    return Server(process, folder, port, getpass.getuser(), folder / "id_test",
                  folder / "id_other", known_hosts)


def _sshd():
    for path in (shutil.which("sshd"), *_SSHD_PLACES):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)  # sshd refuses to start from a relative path
    raise Unavailable("sshd not installed: apt install openssh-server")


def _config(folder, port, sftp=True):
    lines = [
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
        # Without PAM, sshd refuses an account whose password is locked ("!" in shadow, as for
        # most CI users) even for key logins; with PAM as root, session modules such as
        # pam_loginuid fail in containers. Each case gets the one that works.
        "UsePAM no" if os.geteuid() == 0 else "UsePAM yes",
        "StrictModes no", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", f"AllowUsers {getpass.getuser()}",
        "LogLevel ERROR", "UseDNS no", "PrintMotd no", "MaxStartups 50",
        # scp speaks SFTP since OpenSSH 9; internal-sftp needs no helper binary.
        *(["Subsystem sftp internal-sftp"] if sftp else []), *_OPTIONAL,
    ]
    return "\n".join(lines) + "\n"


def _drop_unknown_options(sshd, config):
    for option in _OPTIONAL:
        check = subprocess.run([sshd, "-t", "-f", str(config)], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
        if check.returncode == 0:
            return
        if option.split()[0] in check.stderr:
            config.write_text(config.read_text().replace(option + "\n", ""))
    check = subprocess.run([sshd, "-t", "-f", str(config)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise Unavailable(f"sshd rejects its test config: {check.stderr.strip()}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(process, port, log):
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"sshd exited at start (status {process.returncode}): "
                              f"{log.read_text(errors='replace').strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise Unavailable(f"sshd did not accept connections on port {port} within "
                      f"{_START_TIMEOUT_S} s")
