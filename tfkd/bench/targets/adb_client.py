"""`adb` for the adb target: finding it, choosing the device, commands with status and timeout.

Every remote command is one string built here with `shlex.quote` per word, because `adb shell`
joins its arguments and hands them to the device's shell as one command line. Local arguments
(`push`, `pull`) go to adb as separate argv elements; nothing here runs a local shell.
"""

import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess

from tfkd.bench.targets.adb_errors import (CHOOSE, AdbError, AdbNotFound, AdbTimeout,
                                           DeviceLost, DeviceNotReady, MultipleDevices, NoDevice,
                                           RemoteCommandFailed, classify, first_line,
                                           not_ready_message, tail)

# Echoed after every remote command: old adbd (no shell protocol) makes `adb shell` exit 0
# whatever the command did, so the remote status travels in the output instead.
STATUS_MARKER = "__TFKD_STATUS__="
_STATUS_LINE = re.compile(r"\n?" + re.escape(STATUS_MARKER) + r"(\d+)\s*$")
_PROPERTY = re.compile(r"[a-z_]+:\S*")
_HOW_TO_INSTALL = (
    "Install it: on Debian/Ubuntu `sudo apt install adb`; elsewhere download Android SDK "
    "Platform-Tools (https://developer.android.com/tools/releases/platform-tools) and put it on "
    "PATH. Or point at an adb binary with --adb PATH (adb= in Python) or the ADB environment "
    "variable.")


@dataclasses.dataclass(frozen=True)
class Device:
    """One line of `adb devices -l`.

    Attributes:
        serial: what `adb -s` takes.
        state: "device" when usable; "unauthorized", "offline", "no permissions (...)", ...
        properties: the key:value pairs (usb, product, model, device, transport_id).
    """

    serial: str
    state: str
    properties: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ShellResult:
    """A finished remote command: its exit status, stdout and (locally captured) stderr."""

    status: int
    output: str
    stderr: str = ""


def quote(words):
    """One remote command line from `words`, each quoted so the device shell sees it as one word."""
    return " ".join(shlex.quote(os.fspath(w)) for w in words)


def find_adb(adb=None):
    """The adb executable: `adb`, else `$ADB`, else `adb` on PATH.

    Raises:
        AdbNotFound: with how to install adb or point at one.
    """
    given = adb or os.environ.get("ADB")
    if not given:
        found = shutil.which("adb")
        if not found:
            raise AdbNotFound(f"adb (Android Debug Bridge) is not on PATH. {_HOW_TO_INSTALL}")
        return found
    origin = "--adb / adb=" if adb else "$ADB"
    given = os.fspath(given)
    found = given if os.sep in given else shutil.which(given)
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise AdbNotFound(f"no executable adb at {given!r} (from {origin}). {_HOW_TO_INSTALL}")
    return found


def parse_devices(text):
    """The devices in `adb devices [-l]` output, in order.

    The state can hold spaces ("no permissions (...); see [http://...]"), so the key:value
    pairs are taken from the end of the line (adb appends them last) and the rest is the state.
    """
    devices = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue  # the header and "* daemon started successfully" chatter
        serial, *tokens = line.split()
        pairs = []
        while tokens and _PROPERTY.fullmatch(tokens[-1]):
            pairs.insert(0, tokens.pop().split(":", 1))
        state = " ".join(tokens)
        # Anything else with several words is adb chatter ("adb server version (40) doesn't...").
        if state and (len(tokens) == 1 or state.startswith("no permissions")):
            devices.append(Device(serial, state, dict(pairs)))
    return devices


def list_devices(adb=None, timeout_s=60):
    """The devices adb sees (any state), from `adb devices -l`.

    Args:
        adb: the adb executable; see `find_adb`.
        timeout_s: seconds before adb is killed (starting the adb server can take a few).
    """
    client = Adb(find_adb(adb), serial=None, timeout_s=timeout_s)
    code, out, err = client.run(["devices", "-l"])
    if code != 0:
        raise AdbError(f"`adb devices -l` failed (exit {code}): {(err or out).strip()}; try "
                       "`adb kill-server` and run again")
    return parse_devices(out)


def select_device(devices, serial=None):
    """The one device to use: `serial`, else `$ANDROID_SERIAL`, else the only one attached.

    Raises:
        NoDevice, MultipleDevices, DeviceNotReady: with what to do about it.
    """
    origin = "--serial / serial="
    if not serial and os.environ.get("ANDROID_SERIAL"):
        serial, origin = os.environ["ANDROID_SERIAL"], "$ANDROID_SERIAL"
    if serial:
        matches = [d for d in devices if d.serial == serial]
        if not matches:
            raise NoDevice(f"no device {serial!r} (from {origin}) is attached; adb sees "
                           f"{_listing(devices) or 'no devices'}. {CHOOSE}, or unset it.")
        device = matches[0]
    elif not devices:
        raise NoDevice(
            "adb sees no Android device. Plug the phone in with a data USB cable, enable "
            "Developer options (tap Settings > About phone > Build number 7 times) and USB "
            "debugging, and accept the 'Allow USB debugging?' prompt on the phone; for Wi-Fi "
            "debugging run `adb pair` / `adb connect HOST:PORT` first. Check with `adb devices`.")
    elif len(devices) > 1:
        raise MultipleDevices(f"{len(devices)} devices are attached: {_listing(devices)}; "
                              f"{CHOOSE}.")
    else:
        device = devices[0]
    if device.state != "device":
        raise DeviceNotReady(not_ready_message(device.serial, device.state), device.state)
    return device


def _listing(devices):
    return ", ".join(f"{d.serial} ({d.state}" + (f", {d.properties['model']}"
                     if "model" in d.properties else "") + ")" for d in devices)


class Adb:
    """adb for one device (`serial`), every command killed after `timeout_s` seconds."""

    def __init__(self, path, serial, timeout_s=300):
        self.path, self.serial, self.timeout_s = path, serial, timeout_s

    def run(self, args, timeout_s=None, what=None):
        """Runs `adb [-s SERIAL] ARGS`; returns (exit code, stdout, stderr) as text.

        `what` names the command in a timeout message (default: the whole command line).
        """
        argv = [self.path, *(["-s", self.serial] if self.serial else []), *args]
        timeout_s = timeout_s or self.timeout_s
        try:
            # A session of its own, so a timeout can kill adb and anything it started.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            raise AdbNotFound(f"cannot run {self.path}: {err}. {_HOW_TO_INSTALL}") from err
        with proc:
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise AdbTimeout(f"`{what or shlex.join(argv)}` did not finish within "
                                 f"{timeout_s:g} s and was killed; raise --timeout_s "
                                 "(timeout_s=) for a slow model, or check that the device "
                                 f"responds (`adb -s {self.serial} shell true`)") from None
            except BaseException:  # KeyboardInterrupt: leave no adb behind
                _kill(proc)
                raise
        return proc.returncode, _text(out), _text(err)

    def shell(self, command, *, timeout_s=None, check=True):
        """Runs `command` (one shell command line, already quoted) on the device.

        Raises:
            DeviceLost, DeviceNotReady, AdbTimeout: adb could not run or finish it.
            RemoteCommandFailed: `check` and the command exited nonzero.
        """
        wrapped = f"{command}; s=$?; echo; echo {STATUS_MARKER}$s"
        shown = first_line(command)  # a script's first line: its output says the rest
        code, out, err = self.run(["shell", wrapped], timeout_s,
                                  what=f"adb -s {self.serial} shell {shown}")
        match = _STATUS_LINE.search(out)
        if match is None or (code != 0 and classify(err, self.serial, shown)):
            # The remote shell never reached the echo: adb failed or the link broke.
            raise classify(err + out, self.serial, shown) or DeviceLost(
                f"adb exited with status {code} before `{shown}` finished on {self.serial} "
                f"(the device rebooted or the connection broke?): {tail(err + out)}")
        result = ShellResult(int(match[1]), out[:match.start()], err)
        if check and result.status != 0:
            raise RemoteCommandFailed(f"`{shown}` failed on {self.serial} with exit status "
                                      f"{result.status}; the device said:\n"
                                      f"{tail(result.output + err)}")
        return result

    def transfer(self, verb, source, dest, *, timeout_s=None):
        """`adb push LOCAL REMOTE` or `adb pull REMOTE LOCAL`; raises on failure."""
        code, out, err = self.run([verb, os.fspath(source), os.fspath(dest)], timeout_s)
        if code != 0:
            command = f"adb {verb} {quote([source, dest])}"
            raise classify(err + out, self.serial, command) or RemoteCommandFailed(
                f"`{command}` failed (exit {code}): {tail(err + out)}")


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        pass  # something outside the group holds the pipes; do not hang on it


def _text(data):
    # Old adbd runs commands on a pty, which turns "\n" into "\r\n".
    return data.decode("utf-8", "replace").replace("\r\n", "\n")
