"""What the phone is: model, Android version, ABI, SoC, CPUs, governors, battery temperature.

One remote command: `getprop` (every property at once, `[key]: [value]` lines), then a script
that reads the CPU and battery files, each section after an `@name` line. Anything that
cannot be read (SELinux hides much of /sys from the shell user on some phones) is None.
"""

import logging
import re

logger = logging.getLogger("tfkd.bench")

# At or above this the battery is warm enough that phones throttle their CPUs.
HOT_BATTERY_C = 40.0

_PROPS = {
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "android_release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "soc_manufacturer": "ro.soc.manufacturer",
    "soc_model": "ro.soc.model",
    "board_platform": "ro.board.platform",
    "hardware": "ro.hardware",
}
# A constant script: no word of it comes from the user.
_PROBE = "; ".join([
    "echo @present", "cat /sys/devices/system/cpu/present 2>/dev/null",
    "echo @nproc", "nproc 2>/dev/null",
    "echo @governors",
    "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do "
    "[ -r \"$f\" ] && echo \"$f: $(cat \"$f\" 2>/dev/null)\"; done",
    "echo @battery_temp", "cat /sys/class/power_supply/battery/temp 2>/dev/null",
    "echo @dumpsys", "dumpsys battery 2>/dev/null",
    "true",
])
_GETPROP_LINE = re.compile(r"^\[([^\]\n]+)\]: \[(.*?)\]$", re.M | re.S)


def parse_getprop(text):
    """{key: value} from `adb shell getprop` output (values may span lines)."""
    return {key: value for key, value in _GETPROP_LINE.findall(text)}


def parse_cpu_list(text):
    """The number of CPUs in a kernel CPU list such as "0-7" or "0-3,6", or None."""
    count = 0
    for part in text.strip().split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match:
            return None
        first, last = int(match[1]), int(match[2] or match[1])
        count += last - first + 1
    return count or None


def battery_temp_c(dumpsys_text, sysfs_text=""):
    """The battery temperature in degrees C from `dumpsys battery` (tenths of a degree), or
    from /sys/class/power_supply/battery/temp; None if neither has it."""
    match = re.search(r"^\s*temperature:\s*(-?\d+)\s*$", dumpsys_text, re.M)
    if not match:
        match = re.fullmatch(r"\s*(-?\d+)\s*", sysfs_text)
    return int(match[1]) / 10.0 if match else None


def _sections(text):
    """{"present": "...", ...} from the probe's output."""
    sections, name = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"@\w+", line.strip()):
            name = line.strip()[1:]
            sections[name] = []
        elif name:
            sections[name].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def primary_abi(props):
    """The device's preferred ABI: the first of ro.product.cpu.abilist, else ro.product.cpu.abi."""
    abilist = props.get("ro.product.cpu.abilist", "").strip()
    return abilist.split(",")[0].strip() if abilist else props.get("ro.product.cpu.abi") or None


def describe(client):
    """The `BenchResult.device` dict of the device behind `client` (an `adb_client.Adb`).

    Returns:
        serial, manufacturer, model, android_release, sdk, abi, abilist, soc_manufacturer,
        soc_model, board_platform, hardware, cpu_count, cpu_governors ({"cpu0": "schedutil",
        ...}) and battery_temp_c; None where the device does not tell.
    """
    # One round trip (each costs tens of ms over USB); getprop's lines come before "@present".
    text = client.shell(f"getprop; {_PROBE}").output
    props = parse_getprop(text.partition("\n@present\n")[0])
    probe = _sections(text)
    info = {"serial": client.serial}
    info.update({name: props.get(key) or None for name, key in _PROPS.items()})
    info["abi"] = primary_abi(props)
    info["abilist"] = props.get("ro.product.cpu.abilist") or None
    nproc = probe.get("nproc", "")
    info["cpu_count"] = parse_cpu_list(probe.get("present", "")) or (
        int(nproc) if nproc.isdigit() else None)
    governors = dict(re.findall(r"/(cpu\d+)/cpufreq/scaling_governor: (\S+)",
                                probe.get("governors", "")))
    info["cpu_governors"] = governors or None
    info["battery_temp_c"] = battery_temp_c(probe.get("dumpsys", ""),
                                            probe.get("battery_temp", ""))
    return info


def thermal_warning(info):
    """A warning (logged, and returned for `extra`) if the battery is hot; else None."""
    temp = info.get("battery_temp_c")
    if temp is None or temp < HOT_BATTERY_C:
        return None
    message = (f"battery of {info.get('serial')} is at {temp:g} C (>= {HOT_BATTERY_C:g} C): "
               "the phone is likely throttling its CPUs, so timings will be slow and noisy; let "
               "it cool down (unplug the charger, close apps) and run again")
    logger.warning(message)
    return message
