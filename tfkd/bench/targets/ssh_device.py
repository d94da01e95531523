"""What the board is, gathered in one ssh round trip that also creates the per-run folder.

The probe is one POSIX shell script printing `key=value` lines. Every probe tolerates a missing
file or command (a board without `vcgencmd`, a container without cpufreq), so the only way it
fails is when it cannot create the run folder.
"""

import re
import shlex
import warnings

from tfkd.bench.targets.ssh_errors import RemoteCommandFailed, SshError, tail

# The per-run folder: under /tmp so that a crashed run leaves nothing once the board reboots,
# and named by mktemp, so runs in parallel never share one.
RUN_DIR_PATTERN = re.compile(r"/tmp/tfkd-[A-Za-z0-9._]{6,}")
_MKTEMP_FAILED = 90  # the probe's `exit 90`

# Each value is one line; stderr of each probe is dropped so a missing tool prints nothing.
PROBE = r"""
d=$(mktemp -d /tmp/tfkd-XXXXXX) || exit 90
kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | head -n 1 | tr -d '\000\r')"; }
kv run_dir "$d"
kv board "$({ tr -d '\000' < /proc/device-tree/model; } 2>/dev/null)"
kv hostname "$(uname -n 2>/dev/null)"
kv system "$(uname -s 2>/dev/null)"
kv machine "$(uname -m 2>/dev/null)"
kv release "$(uname -r 2>/dev/null)"
kv long_bit "$(getconf LONG_BIT 2>/dev/null)"
kv cpu_count "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
kv lscpu_model "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')"
kv cpuinfo_model "$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null)"
kv governor "$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)"
kv max_khz "$(cat /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 2>/dev/null)"
kv vc_temp "$(vcgencmd measure_temp 2>/dev/null)"
kv zone_temp "$(cat /sys/class/thermal/thermal_zone0/temp 2>/dev/null)"
kv throttled "$(vcgencmd get_throttled 2>/dev/null)"
kv os "$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null)"
kv mem_kb "$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo 2>/dev/null)"
"""

# `vcgencmd get_throttled` bits (Raspberry Pi firmware): the low ones are the state now, the
# ones 16 higher say it has happened since boot.
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled",
                 3: "soft temperature limit"}
_SINCE_BOOT_SHIFT = 16


def open_run_dir(connection, timeout_s):
    """Creates the run folder on the board and describes the board, in one ssh call.

    Returns:
        (device description dict, run folder path).

    Raises:
        SshError: no connection, or the folder could not be created.
    """
    try:
        code, out, err = connection.run(PROBE, timeout_s, what="describing the board")
    except SshError as error:
        # The folder may exist though the call failed later: remove it if it was named.
        _remove_named(connection, parse_fields(error.stdout).get("run_dir"))
        raise
    fields = parse_fields(out)
    run_dir = fields.get("run_dir", "")
    if code != 0 or not RUN_DIR_PATTERN.fullmatch(run_dir):
        _remove_named(connection, run_dir)
        cause = ("mktemp -d failed: is /tmp writable and not full?" if code == _MKTEMP_FAILED
                 else f"the probe exited with status {code} and printed no folder name; is the "
                      "login shell a POSIX shell (sh, bash, zsh)?")
        raise RemoteCommandFailed(f"cannot create a run folder under /tmp on "
                                  f"{connection.host}: {cause}", tail(err), out, code)
    return describe(fields), run_dir


def _remove_named(connection, run_dir):
    if run_dir and RUN_DIR_PATTERN.fullmatch(run_dir):
        try:
            connection.run(f"rm -rf -- {shlex.quote(run_dir)}", 30, what="removing the run folder")
        except SshError:
            pass  # The original error is the one to report.


def parse_fields(text):
    """The `key=value` lines of the probe's output as a dict; the first of a key wins."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z_]+", key) and key not in fields:
            fields[key] = value.strip()
    return fields


def describe(fields):
    """The `BenchResult.device` dict from the probe's fields; None where a probe found nothing.

    Keys shared with `tfkd.bench.results.host_description` mean the same: hostname, system,
    release, machine, processor, cpu_count.
    """
    throttled = _throttled_value(fields.get("throttled"))
    now, since_boot = decode_throttled(throttled) if throttled is not None else (None, None)
    mem_kb, max_khz = _number(fields.get("mem_kb")), _number(fields.get("max_khz"))
    return {
        "hostname": fields.get("hostname") or None,
        "system": fields.get("system") or None,
        "release": fields.get("release") or None,
        "machine": fields.get("machine") or None,
        "processor": fields.get("lscpu_model") or fields.get("cpuinfo_model") or None,
        "cpu_count": _int(_number(fields.get("cpu_count"))),
        "board": fields.get("board") or None,
        "os": fields.get("os", "").strip("\"'") or None,
        "userland_bits": _int(_number(fields.get("long_bit"))),
        "memory_mb": None if mem_kb is None else round(mem_kb / 1024),
        "cpu_max_mhz": None if max_khz is None else round(max_khz / 1000),
        "governor": fields.get("governor") or None,
        "temperature_c": _temperature(fields),
        "throttled": None if throttled is None else hex(throttled),
        "throttled_now": now,
        "throttled_since_boot": since_boot,
    }


def decode_throttled(value):
    """(conditions now, conditions since boot) named in a `vcgencmd get_throttled` value."""
    now = [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]
    since = [name for bit, name in THROTTLE_BITS.items() if value >> (bit + _SINCE_BOOT_SHIFT) & 1]
    return now, since


def throttle_warnings(device, host):
    """A warning (also issued with `warnings.warn`) if the board is throttled right now."""
    if not device.get("throttled_now"):
        return []
    message = (f"{host} is throttled now ({', '.join(device['throttled_now'])}; vcgencmd "
               f"get_throttled={device['throttled']}): its timings are slower than the board "
               "can do. Use the official power supply and cooling, let it cool down, and rerun")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return [message]


def _throttled_value(text):
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    return int(match[1], 0) if match else None


def _temperature(fields):
    """Degrees Celsius from `vcgencmd measure_temp` ("temp=48.3'C"), else thermal zone 0."""
    match = re.search(r"temp=([-\d.]+)", fields.get("vc_temp", ""))
    if match and _number(match[1]) is not None:
        return _number(match[1])
    millidegrees = _number(fields.get("zone_temp"))
    return None if millidegrees is None else round(millidegrees / 1000, 1)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _int(value):
    return None if value is None else int(value)
