"""The errors of the adb target (`android_bench` re-exports them): each says what to do."""

import re

CHOOSE = "choose one with --serial SERIAL (serial= in Python) or set ANDROID_SERIAL"


class AdbError(RuntimeError):
    """Base of every error talking to a device; the message says what to do."""


class AdbNotFound(AdbError):
    """No adb executable: not installed, not on PATH, or a wrong --adb / $ADB."""


class NoDevice(AdbError):
    """adb lists no device, or none with the serial asked for."""


class MultipleDevices(AdbError):
    """Several devices are attached and none was chosen."""


class DeviceNotReady(AdbError):
    """The device is attached but not usable (unauthorized, offline, recovery, ...).

    Attributes:
        state: the state `adb devices` reports, e.g. "unauthorized".
    """

    def __init__(self, message, state=None):
        super().__init__(message)
        self.state = state


class DeviceLost(AdbError):
    """The device disappeared or went offline while a command ran."""


class AdbTimeout(AdbError):
    """An adb command ran past its timeout and was killed."""


class RemoteCommandFailed(AdbError):
    """A command on the device exited with a nonzero status."""


class NotExecutable(AdbError):
    """The pushed benchmark binary cannot be executed on the device (noexec storage?)."""


def not_ready_message(serial, state):
    """What to do about a device in `state` (anything but "device")."""
    if state.startswith("no permissions") or state == "insufficient permissions":
        advice = ("this user may not open the USB device: install adb's udev rules (Debian: "
                  "`sudo apt install android-sdk-platform-tools-common`), add yourself to the "
                  "plugdev group, log in again and replug the phone")
    else:
        advice = {
            "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' RSA key "
                            "prompt (tick 'Always allow'); no prompt? revoke USB debugging "
                            "authorizations in Developer options and replug",
            "authorizing": "the phone is still checking this computer's key: accept the prompt "
                           "on the phone and run again in a few seconds",
            "connecting": "adb is still connecting: run again in a few seconds",
            "offline": "replug the cable, or run `adb kill-server`, or toggle USB debugging on "
                       "the phone",
            "bootloader": "the phone is in the bootloader (fastboot): reboot it into Android",
            "host": "that is an adb host, not a phone",
        }.get(state, f"reboot it into Android (`adb -s {serial} reboot`)"
              if state in ("recovery", "sideload", "rescue") else "replug it and check "
              "`adb devices` until it shows 'device'")
    return f"device {serial} is not ready (state {state!r}): {advice}."


def classify(text, serial, command):
    """The `AdbError` that adb's own error text in `text` stands for, or None."""
    lowered = text.lower()
    said = next((line.strip() for line in text.splitlines()
                 if line.lower().startswith(("adb:", "error:", "adb.exe:"))), tail(text))
    if "unauthorized" in lowered:
        return DeviceNotReady(not_ready_message(serial, "unauthorized"), "unauthorized")
    if "insufficient permissions" in lowered:
        return DeviceNotReady(not_ready_message(serial, "insufficient permissions"))
    if "more than one device" in lowered:
        return MultipleDevices(f"adb says {said!r}; {CHOOSE}.")
    if re.search(r"no devices/emulators found|device '[^']*' not found|device not found"
                 r"|device offline|device still connecting|error: closed|protocol fault"
                 r"|connection reset", lowered):
        return DeviceLost(f"device {serial} disappeared or went offline during `{command}` "
                          f"(adb said: {said}). Check the cable and that the phone did not "
                          "reboot, then run again.")
    if re.search(r"cannot connect to daemon|failed to start daemon|smartsocket", lowered):
        return AdbError(f"the adb server could not be reached (adb said: {said}); run "
                        "`adb kill-server` and try again")
    return None


def first_line(command):
    """A command for an error message: its first line, and how many more a script has."""
    lines = [line for line in command.strip().splitlines() if line.strip()] or [""]
    more = len(lines) - 1
    return lines[0].strip() + (f" ... ({more} more line{'s' if more > 1 else ''})" if more else "")


def tail(text, n=12):
    """The last `n` non-blank lines of `text`, for error messages."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-n:]) or "(no output)"
