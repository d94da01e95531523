"""The errors of the ssh target (`tfkd.bench.ssh` re-exports them): each says what to do.

`classify` turns what ssh printed when it failed (exit status 255) into one of them.
"""

import re

TAIL_LINES = 15


class SshError(RuntimeError):
    """A command could not be run on the board; `reason` says what to do.

    Attributes:
        reason: one line saying what went wrong and what to do.
        detail: the last lines ssh (or the command) printed on stderr.
        stdout: what the command printed on stdout before it failed.
    """

    def __init__(self, reason, detail="", stdout=""):
        super().__init__(reason, detail)
        self.reason, self.detail, self.stdout = reason, detail, stdout

    def __str__(self):
        return f"{self.reason}\nssh said:\n{self.detail}" if self.detail else self.reason


class SshNotInstalled(SshError):
    """The OpenSSH client is not on this machine."""


class SshAuthenticationError(SshError):
    """The board refused the login (no key it accepts, wrong user)."""


class SshHostKeyError(SshError):
    """The board's host key is unknown or changed, and host-key checking is on."""


class SshConnectionError(SshError):
    """No ssh connection: refused, timed out, unknown host name, no route."""


class SshTimeout(SshError):
    """A command ran past its timeout; its local ssh was killed."""


class RemoteCommandFailed(SshError):
    """The remote command ran and exited with a nonzero status (`status`)."""

    def __init__(self, reason, detail="", stdout="", status=None):
        super().__init__(reason, detail, stdout)
        self.status = status


# (pattern in ssh's stderr, error class, advice); the first match wins.
_SSH_FAILURES = (
    (r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key for .* has "
     r"changed|No \S+ host key is known", SshHostKeyError,
     "the host key of {host} is not in known_hosts, or has changed, and host-key checking is "
     "on: connect once by hand ({manual}) to check and accept it; if the board was reinstalled, "
     "remove the old key with `ssh-keygen -R {host}` first"),
    (r"UNPROTECTED PRIVATE KEY FILE|bad permissions", SshAuthenticationError,
     "ssh refuses a private key that others can read: chmod 600 the identity file"),
    (r"Permission denied|Too many authentication failures|No more authentication methods",
     SshAuthenticationError,
     "{dest} refused the login (only key authentication is tried, never passwords): set up a "
     "key with `ssh-copy-id{port_opt} {dest}`, or pass identity_file= the private key the "
     "board accepts; check the user name"),
    (r"Connection refused", SshConnectionError,
     "nothing accepts ssh connections on {host} port {port}: check the host and port, and that "
     "the ssh server runs on the board (sudo systemctl enable --now ssh; on Raspberry Pi OS, "
     "enable SSH in raspi-config)"),
    (r"Could not resolve hostname|Name or service not known|nodename nor servname|"
     r"Temporary failure in name resolution", SshConnectionError,
     "cannot resolve the host name {host}: check its spelling, or use the board's IP address "
     "(.local names need mDNS: avahi-daemon on the board, nss-mdns here)"),
    (r"timed out|Connection timeout", SshConnectionError,
     "no answer from {host} port {port} within connect_timeout_s={connect_timeout_s} s: check "
     "that the board is on and on the network, the address and port, and firewalls"),
    (r"No route to host|Network is unreachable|Host is down", SshConnectionError,
     "{host} cannot be reached: check that the board is on and on this network"),
    (r"Connection (?:closed|reset) by|kex_exchange_identification|Broken pipe", SshConnectionError,
     "{host} closed the connection: its sshd may refuse this client (AllowUsers, MaxStartups, "
     "fail2ban) or have crashed; try `ssh {manual_args}` by hand"),
    (r"Bad configuration option|command-line line|keyword .* extra arguments|"
     r"unsupported option|Unsupported option", SshError,
     "ssh rejected an option: check ssh_options (each 'Key=Value') and config_file"),
    (r"Identity file .* not accessible|No such identity", SshAuthenticationError,
     "the identity file cannot be read: check the identity_file path"),
)


def classify(err, out, fields):
    """The error that ssh's stderr `err` stands for; `fields` fill in the advice (host, dest,
    port, port_opt, connect_timeout_s, manual_args, manual)."""
    for pattern, error_class, advice in _SSH_FAILURES:
        if re.search(pattern, err, re.I):
            return error_class(advice.format(**fields), tail(err), out)
    return SshError(f"ssh to {fields['dest']} failed (exit status 255); try "
                    f"`ssh {fields['manual_args']}` by hand to see why", tail(err), out)


def tail(text, n=TAIL_LINES):
    """The last `n` non-blank lines of `text`."""
    return "\n".join([line.rstrip() for line in text.splitlines() if line.strip()][-n:])
