"""Tests for android_bench and the adb target of tfkd.bench against tests/fake_adb/adb, a double
of adb with a fake phone.

The fake phone is a folder: /data/local/tmp and /sys of the device live under it, remote
commands really run in /bin/sh, and the pushed "benchmark_model" is a shell script that prints
what the real tool prints. The real adb is never run: PATH holds only the double and python3.
"""

import json
import os
import pathlib
import shlex
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import android_bench
from android_bench.__main__ import DELEGATE_WORDS, main
from tfkd import bench
from tfkd.bench import benchmark_tool
from tfkd.bench.benchmark_tool import BenchmarkFailed
from tfkd.bench.fetch import cache_path
from tfkd.bench.results import read_jsonl
from tfkd.bench.targets import adb as adb_target
from tfkd.bench.targets import adb_client as adb_lib
from tfkd.bench.targets import adb_device as device_lib

FAKE_ADB_DIR = pathlib.Path(__file__).parent / "fake_adb"
SERIAL = "R58M123ABC"
PROPS = {
    "ro.product.model": "SM-G973F", "ro.product.manufacturer": "samsung",
    "ro.build.version.release": "12", "ro.build.version.sdk": "31",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi", "ro.product.cpu.abi": "arm64-v8a",
    "ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8150", "ro.board.platform": "msmnile",
    "ro.hardware": "qcom",
}

# Prints what benchmark_model prints, from the flags it gets; logs each argument to
# $FAKE_BENCH_LOG; fails like the real tool when $FAKE_BENCH_GPU_FAILS is set and it gets
# --use_gpu=true; takes $FAKE_BENCH_US_PER_KB microseconds per kB of model file when that is
# set (else 4 ms); exits with $FAKE_BENCH_EXIT after printing everything when that is set;
# hangs, after writing its pid to the file $FAKE_BENCH_HANG, when that is set.
STAND_IN = textwrap.dedent("""\
    #!/bin/sh
    graph= threads=1 runs=50 warmup=1 csv= gpu=0 xnn=1
    for a in "$@"; do
      printf '%s\\n' "$a" >> "$FAKE_BENCH_LOG"
      case "$a" in
        --graph=*) graph=${a#--graph=} ;;
        --num_threads=*) threads=${a#--num_threads=} ;;
        --num_runs=*) runs=${a#--num_runs=} ;;
        --warmup_runs=*) warmup=${a#--warmup_runs=} ;;
        --profiling_output_csv_file=*) csv=${a#--profiling_output_csv_file=} ;;
        --use_gpu=true) gpu=1 ;;
        --use_xnnpack=false) xnn=0 ;;
      esac
    done
    echo "--" >> "$FAKE_BENCH_LOG"
    if [ -n "$FAKE_BENCH_HANG" ]; then  # a hung tool, for at most 30 s
      echo $$ > "$FAKE_BENCH_HANG"
      i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    echo "INFO: STARTING!"
    echo "INFO: Log parameter values verbosely: [0]"
    echo "INFO: Min num runs: [$runs]"
    echo "INFO: Num threads: [$threads]"
    echo "INFO: Min warmup runs: [$warmup]"
    echo "INFO: Graph: [$graph]"
    echo "INFO: #threads used for CPU inference: [$threads]"
    echo "INFO: Use gpu: [$gpu]"
    echo "INFO: Use xnnpack: [$xnn]"
    if [ ! -f "$graph" ]; then
      echo "ERROR: Could not open '$graph'."; echo "ERROR: Benchmarking failed."; exit 1
    fi
    if [ "$gpu" = 1 ] && [ -n "$FAKE_BENCH_GPU_FAILS" ]; then
      echo "ERROR: Failed to apply GPU delegate."; echo "ERROR: Benchmarking failed."; exit 1
    fi
    echo "INFO: Loaded model $graph"
    echo "INFO: The input model file size (MB): 0.012"
    echo "INFO: Initialized session in 3.5ms."
    echo "INFO: Running benchmark for at least $warmup iterations and at least 0 seconds but terminate if exceeding 150 seconds."
    echo "INFO: count=$warmup first=2100 curr=1900 min=1800 max=2100 avg=1950 std=120"
    echo
    echo "INFO: Running benchmark for at least $runs iterations and at least 1 seconds but terminate if exceeding 150 seconds."
    if [ -n "$FAKE_BENCH_US_PER_KB" ]; then  # a latency that grows with the model file
      avg=$(( $(wc -c < "$graph") * FAKE_BENCH_US_PER_KB / 1024 / threads ))
    else
      avg=$((4000 / threads))
    fi
    echo "INFO: count=$runs first=$((avg + 100)) curr=$avg min=$((avg - 50)) max=$((avg + 400)) avg=$avg std=30 p5=$((avg - 40)) median=$avg p95=$((avg + 200))"
    echo
    echo "INFO: Inference timings in us: Init: 3500, First inference: 2100, Warmup (avg): 1950, Inference (avg): $avg"
    echo "INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=9.75"
    echo "INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.25"
    if [ -n "$csv" ]; then printf 'node type,avg ms\\nCONV_2D,0.5\\n' > "$csv"; fi
    exit "${FAKE_BENCH_EXIT:-0}"
""")
DEVICE_TOOLS = {
    "dumpsys": '#!/bin/sh\n[ "$1" = battery ] || exit 1\n'
               'printf "Current Battery Service state:\\n  AC powered: false\\n  level: 87\\n'
               '  temperature: ${FAKE_BATTERY_TENTHS:-312}\\n  technology: Li-ion\\n"\n',
    "taskset": '#!/bin/sh\necho "$1" >> "$FAKE_TASKSET_LOG"\nshift\nexec "$@"\n',
    "reboot": '#!/bin/sh\ntouch "$FAKE_REBOOT_MARKER"\n',
}


class Phone:
    """The fake adb's state file and the fake phone's folder."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp = tmp_path
        self.dir = tmp_path / "phone"
        self.root = self.dir / "device"
        self.state = {"devices": [device_entry(SERIAL)]}
        cpu = self.root / "sys/devices/system/cpu"
        for i in range(8):
            (cpu / f"cpu{i}/cpufreq").mkdir(parents=True)
            (cpu / f"cpu{i}/cpufreq/scaling_governor").write_text(
                "performance\n" if i == 7 else "schedutil\n")
        (cpu / "present").write_text("0-7\n")
        (self.root / "data/local/tmp").mkdir(parents=True)
        bin_dir = self.root / "system/bin"
        bin_dir.mkdir(parents=True)
        for name, text in DEVICE_TOOLS.items():
            write_executable(bin_dir / name, text)
        self.binary = write_executable(tmp_path / "benchmark_model", STAND_IN)
        self.model = tmp_path / "student_int8.tflite"
        self.model.write_bytes(b"\x1c\x00\x00\x00TFL3 not a real model")
        host_bin = tmp_path / "host_bin"  # python3 for the double's #!, and no real adb
        host_bin.mkdir()
        # -S: the double needs no site-packages, and skipping them halves its start-up time.
        write_executable(host_bin / "python3", f'#!/bin/sh\nexec {shlex.quote(sys.executable)} '
                                                '-S "$@"\n')
        self.path = f"{FAKE_ADB_DIR}{os.pathsep}{host_bin}"
        env = {"FAKE_ADB_STATE": self.dir / "state.json", "PATH": self.path,
               "FAKE_BENCH_LOG": tmp_path / "bench_args.log",
               "FAKE_TASKSET_LOG": tmp_path / "taskset.log",
               "FAKE_REBOOT_MARKER": tmp_path / "REBOOTED"}
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        for key in ("ANDROID_SERIAL", "ADB", "FAKE_BENCH_GPU_FAILS", "FAKE_BENCH_EXIT",
                    "FAKE_BENCH_HANG", "FAKE_BATTERY_TENTHS", "FAKE_BENCH_US_PER_KB"):
            monkeypatch.delenv(key, raising=False)
        self.save()

    def save(self, **changes):
        self.state.update(changes)
        (self.dir / "state.json").write_text(json.dumps(self.state))

    def calls(self):
        """Every argv the double got, in order."""
        log = self.dir / "adb.log"
        if not log.exists():
            return []
        return [json.loads(line)["argv"] for line in log.read_text().splitlines()]

    def bench_calls(self):
        """The argument lists the stand-in benchmark_model got, one per run."""
        path = self.tmp / "bench_args.log"
        text = path.read_text() if path.exists() else ""
        return [run.strip("\n").split("\n") for run in text.split("--\n") if run.strip()]

    def remote_runs(self):
        """What is left in /data/local/tmp/tfkd on the phone."""
        folder = self.root / adb_target.REMOTE_ROOT.lstrip("/")
        return sorted(os.listdir(folder)) if folder.exists() else []

    def run(self, **kwargs):
        kwargs.setdefault("benchmark_binary", self.binary)
        return android_bench.run(self.model, **kwargs)


def device_entry(serial, state="device", props=PROPS):
    return {"serial": serial, "state": state, "devpath": "usb:1-1", "product": "beyond1lte",
            "model": "SM_G973F", "device": "beyond1", "props": dict(props)}


def write_executable(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def phone(tmp_path, monkeypatch):
    return Phone(tmp_path, monkeypatch)


def test_happy_path(phone, tmp_path):
    out = tmp_path / "out"
    results = phone.run(threads=(1, 4), output_dir=out, num_runs=20, warmup_runs=2)
    assert [(r.threads, r.delegate) for r in results] == [(1, "xnnpack"), (4, "xnnpack")]
    assert [r.mean_ms for r in results] == [4.0, 1.0]
    first = results[0]
    assert (first.target, first.tool, first.model_path) == (f"adb:{SERIAL}", "benchmark_model",
                                                            str(phone.model))
    assert (first.median_ms, first.p95_ms, first.peak_memory_mb, first.count) == (4.0, 4.2,
                                                                                  14.25, 20)
    assert (first.num_runs, first.warmup_runs, first.init_ms) == (20, 2, 3.5)
    assert first.timestamp and first.device == {
        "serial": SERIAL, "manufacturer": "samsung", "model": "SM-G973F",
        "android_release": "12", "sdk": "31", "soc_manufacturer": "QTI", "soc_model": "SM8150",
        "board_platform": "msmnile", "hardware": "qcom", "abi": "arm64-v8a",
        "abilist": "arm64-v8a,armeabi-v7a,armeabi", "cpu_count": 8,
        "cpu_governors": {**{f"cpu{i}": "schedutil" for i in range(7)}, "cpu7": "performance"},
        "battery_temp_c": 31.2}
    run_dir = first.extra["remote_dir"]
    assert run_dir.startswith("/data/local/tmp/tfkd/run-")
    assert first.extra["remote_command"].startswith(f"{run_dir}/benchmark_model --graph=")
    assert "warnings" not in first.extra
    assert read_jsonl(out / "results.jsonl") == results
    assert phone.remote_runs() == []  # the run folder is gone
    device_calls = [c for c in phone.calls() if c[0] == "-s"]
    assert len(device_calls) == len(phone.calls()) - 1  # all but `adb devices -l`
    assert all(c[1] == SERIAL for c in device_calls)
    args = phone.bench_calls()[0]
    assert "--num_threads=1" in args and "--warmup_min_secs=0" in args


def test_results_are_appended_whole(phone, tmp_path):
    out = tmp_path / "out"
    phone.run(output_dir=out)
    phone.run(output_dir=out, threads=(2,))
    assert [r.threads for r in read_jsonl(out / "results.jsonl")] == [1, 2]
    assert sorted(os.listdir(out)) == ["results.jsonl"]  # no temporary file left


def test_output_dir_none_writes_nothing(phone, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "phone")
    before = set(os.listdir(tmp_path)) | {"bench_args.log"}
    assert phone.run(delegate=("none", "gpu", "nnapi"))[2].delegate == "nnapi"
    assert set(os.listdir(tmp_path)) == before
    assert "runs" not in os.listdir(tmp_path / "phone")
    assert ["--use_xnnpack=false" in args for args in phone.bench_calls()] == [True] * 3
    assert "--use_gpu=true" in phone.bench_calls()[1]


@pytest.mark.parametrize("abi, platform", [("arm64-v8a", "android_aarch64"),
                                            ("armeabi-v7a", "android_arm")])
def test_binary_from_cache_matches_abi(phone, tmp_path, monkeypatch, abi, platform):
    monkeypatch.setenv("TFKD_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("android_aarch64", "android_arm"):
        binary = cache_path(name)
        binary.parent.mkdir(parents=True)
        # A fake ELF: the double runs what follows the header line.
        write_executable(binary, f"\x7fELF {name}\n".encode() + STAND_IN.encode())
    abilist = "arm64-v8a,armeabi-v7a,armeabi" if abi == "arm64-v8a" else "armeabi-v7a,armeabi"
    phone.state["devices"][0]["props"].update({"ro.product.cpu.abilist": abilist,
                                               "ro.product.cpu.abi": abi})
    phone.save()
    result, = phone.run(benchmark_binary=None)
    assert result.extra["benchmark_binary"] == str(cache_path(platform))
    pushes = [c[3] for c in phone.calls() if c[2:3] == ["push"]]
    assert pushes[0] == str(cache_path(platform))
    assert result.device["abi"] == abi


def test_abi_without_prebuilt_binary(phone):
    phone.state["devices"][0]["props"].update({"ro.product.cpu.abilist": "x86_64,x86",
                                               "ro.product.cpu.abi": "x86_64"})
    phone.save()
    with pytest.raises(ValueError, match="no prebuilt benchmark_model for Android ABI 'x86_64'"):
        phone.run(benchmark_binary=None)
    assert not [c for c in phone.calls() if "push" in c]


NO_PERMISSIONS = ("no permissions (user in plugdev group; are your udev rules wrong?); see "
                  "[http://developer.android.com/tools/device.html]")


@pytest.mark.parametrize("state, error, match", [
    ("unauthorized", android_bench.DeviceNotReady, "accept the 'Allow USB debugging\\?' RSA"),
    ("authorizing", android_bench.DeviceNotReady, "still checking this computer's key"),
    ("offline", android_bench.DeviceNotReady, "replug the cable"),
    (NO_PERMISSIONS, android_bench.DeviceNotReady, "udev rules .* plugdev"),
    ("recovery", android_bench.DeviceNotReady, f"reboot it into Android \\(`adb -s {SERIAL}"),
    ("sideload", android_bench.DeviceNotReady, "reboot it into Android"),
    ("bootloader", android_bench.DeviceNotReady, "fastboot"),
])
def test_device_not_ready(phone, state, error, match):
    phone.save(devices=[device_entry(SERIAL, state)])
    with pytest.raises(error, match=match) as info:
        phone.run()
    assert info.value.state == state
    assert len(phone.calls()) == 1  # only `adb devices -l`


def test_no_device(phone):
    phone.save(devices=[])
    with pytest.raises(android_bench.NoDevice, match="enable .*USB debugging"):
        phone.run()


def test_several_devices_need_a_serial(phone):
    phone.save(devices=[device_entry(SERIAL), device_entry("emulator-5554", "offline")])
    with pytest.raises(android_bench.MultipleDevices,
                       match=f"{SERIAL} \\(device, SM_G973F\\), emulator-5554 \\(offline.*"
                             "--serial SERIAL .*ANDROID_SERIAL"):
        phone.run()
    assert phone.run(serial=SERIAL)[0].target == f"adb:{SERIAL}"


def test_android_serial_picks_the_device(phone, monkeypatch):
    phone.save(devices=[device_entry(SERIAL), device_entry("0123456789ABCDEF")])
    monkeypatch.setenv("ANDROID_SERIAL", "0123456789ABCDEF")
    assert phone.run()[0].device["serial"] == "0123456789ABCDEF"
    assert {c[1] for c in phone.calls() if c[0] == "-s"} == {"0123456789ABCDEF"}
    monkeypatch.setenv("ANDROID_SERIAL", "gone")
    with pytest.raises(android_bench.NoDevice, match="no device 'gone' \\(from \\$ANDROID_SERIAL"):
        phone.run()


def test_adb_not_installed(phone, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(android_bench.AdbNotFound, match="apt install adb.*--adb PATH.*ADB"):
        phone.run()
    with pytest.raises(android_bench.AdbNotFound, match="'/nowhere/adb' \\(from \\$ADB\\)"):
        monkeypatch.setenv("ADB", "/nowhere/adb")
        android_bench.list_devices()


def test_adb_from_env_var_and_argument(phone, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "host_bin"))  # python3 only: no adb on PATH
    fake = str(FAKE_ADB_DIR / "adb")
    assert phone.run(adb=fake)[0].target == f"adb:{SERIAL}"
    monkeypatch.setenv("ADB", fake)
    assert [d.serial for d in android_bench.list_devices()] == [SERIAL]


def test_list_devices(phone):
    phone.save(devices=[device_entry(SERIAL), device_entry("????????????", NO_PERMISSIONS)])
    first, second = android_bench.list_devices()
    assert first == android_bench.Device(SERIAL, "device", {
        "usb": "1-1", "product": "beyond1lte", "model": "SM_G973F", "device": "beyond1",
        "transport_id": "1"})
    assert (second.serial, second.state) == ("????????????", NO_PERMISSIONS)


def test_parse_devices_formats():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\n"
            "emulator-5554\tdevice\n"
            "192.168.1.20:5555       offline product:p model:Pixel_7 device:panther "
            "transport_id:3\n"
            f"????????????           {NO_PERMISSIONS} usb:3-2 transport_id:4\n\n")
    devices = adb_lib.parse_devices(text)
    assert [(d.serial, d.state) for d in devices] == [
        ("emulator-5554", "device"), ("192.168.1.20:5555", "offline"),
        ("????????????", NO_PERMISSIONS)]
    assert devices[1].properties["model"] == "Pixel_7"
    assert devices[2].properties == {"usb": "3-2", "transport_id": "4"}


@pytest.mark.parametrize("states, old, serial, error, match", [
    ([], False, None, android_bench.DeviceLost, "adb: no devices/emulators found"),
    ([], True, None, android_bench.DeviceLost, "error: device not found"),
    (["device"], False, "nope", android_bench.DeviceLost, "adb: device 'nope' not found"),
    (["offline"], False, SERIAL, android_bench.DeviceLost, "adb: device offline"),
    (["offline"], True, SERIAL, android_bench.DeviceLost, "error: device offline"),
    (["unauthorized"], False, SERIAL, android_bench.DeviceNotReady, "Allow USB debugging"),
    (["unauthorized"], True, SERIAL, android_bench.DeviceNotReady, "Allow USB debugging"),
    ([NO_PERMISSIONS], False, SERIAL, android_bench.DeviceNotReady, "udev rules"),
    (["device", "device"], False, None, android_bench.MultipleDevices,
     "'adb: more than one device/emulator'; choose one with --serial"),
    (["device", "device"], True, None, android_bench.MultipleDevices,
     "'error: more than one device and emulator'"),
])
def test_adb_error_texts(phone, states, old, serial, error, match):
    phone.save(old_errors=old, devices=[device_entry(f"{SERIAL}{i or ''}", state)
                                        for i, state in enumerate(states)])
    client = adb_lib.Adb(adb_lib.find_adb(), serial, timeout_s=10)
    with pytest.raises(error, match=match):
        client.shell("true")


def test_device_parsers():
    text = "[ro.a]: [1]\n[ro.multi]: [line one\nline two]\n[ro.empty]: []\n"
    assert device_lib.parse_getprop(text) == {"ro.a": "1", "ro.multi": "line one\nline two",
                                              "ro.empty": ""}
    assert [device_lib.parse_cpu_list(t) for t in ("0-7", "0-3,6", "0", "", "x")] == [
        8, 5, 1, None, None]
    assert device_lib.battery_temp_c("  temperature: 412\n") == 41.2
    assert device_lib.battery_temp_c("", "287\n") == 28.7
    assert device_lib.battery_temp_c("", "") is None


def test_tool_failure_removes_the_run_and_writes_nothing(phone, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BENCH_GPU_FAILS", "1")
    with pytest.raises(BenchmarkFailed, match="failed to apply the GPU delegate.*threads=1, "
                                              "delegate=gpu"):
        phone.run(delegate=("xnnpack", "gpu"), output_dir=tmp_path / "out")
    assert len(phone.bench_calls()) == 2  # xnnpack ran, gpu failed
    assert phone.remote_runs() == []
    assert not (tmp_path / "out").exists()


def test_a_failing_script_is_shown_by_its_first_line_and_the_devices_output(phone):
    client = adb_lib.Adb(adb_lib.find_adb(), SERIAL, timeout_s=10)
    script = "echo checking the run folder\nls /no/such/folder\nfalse"
    with pytest.raises(android_bench.RemoteCommandFailed) as error:
        client.shell(script)
    message = str(error.value)
    assert message.startswith(f"`echo checking the run folder ... (2 more lines)` failed on "
                              f"{SERIAL} with exit status 1; the device said:\n")
    assert "checking the run folder" in message.split("said:")[1]
    assert "ls /no/such/folder" not in message.split("said:")[0]  # not the whole script


@pytest.mark.parametrize("exit_status", [True, False])
def test_failure_seen_when_adb_shell_always_exits_zero(phone, monkeypatch, exit_status):
    phone.save(exit_status=exit_status)  # False: old adbd, CRLF output, adb always exits 0
    assert phone.run()[0].mean_ms == 4.0
    monkeypatch.setenv("FAKE_BENCH_EXIT", "3")  # full, parseable output, then status 3
    with pytest.raises(BenchmarkFailed, match=r"benchmark_model failed \(on adb:"
                                              f"{SERIAL}, threads=1, delegate=xnnpack, exit "
                                              r"status 3\)"):
        phone.run()
    assert phone.remote_runs() == []


def test_timeout_stops_the_tool_and_cleans_up(phone, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BENCH_HANG", str(tmp_path / "hung.pid"))
    start = time.monotonic()
    with pytest.raises(android_bench.AdbTimeout, match=f"`adb -s {SERIAL} shell /data/local/"
                       "tmp/tfkd/run-.* did not finish within 1 s and was killed; raise "
                       "--timeout_s"):
        phone.run(timeout_s=1, output_dir=tmp_path / "out")
    assert time.monotonic() - start < 10
    assert phone.remote_runs() == []
    assert not (tmp_path / "out").exists()
    # The hung tool outlived the killed adb client, as on a phone: the cleanup killed it.
    pid = int((tmp_path / "hung.pid").read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.05)


def test_hung_adb_command_times_out(phone):
    phone.save(hang_if_contains="mkdir")
    with pytest.raises(android_bench.AdbTimeout, match="shell mkdir -p .* within 0.5 s"):
        phone.run(timeout_s=0.5)


def test_device_disappearing_mid_run(phone, tmp_path):
    # describe, mkdir, push, push, chmod: the 6th command (the benchmark) finds no phone.
    phone.save(disappear_after=5)
    with pytest.raises(android_bench.DeviceLost, match=f"{SERIAL} disappeared .*adb: device "
                                                       f"'{SERIAL}' not found") as info:
        phone.run(output_dir=tmp_path / "out")
    assert any("could not remove /data/local/tmp/tfkd/run-" in n for n in info.value.__notes__)
    assert not (tmp_path / "out").exists()
    assert phone.bench_calls() == []


def test_connection_lost_during_the_benchmark(phone, tmp_path):
    phone.save(lost_during=6)  # prints half its output, then adb exits 255
    with pytest.raises(android_bench.DeviceLost, match="status 255 before .* finished"):
        phone.run(output_dir=tmp_path / "out")
    assert phone.remote_runs() == []
    assert not (tmp_path / "out").exists()


def test_old_adb_error_texts(phone):
    phone.save(old_errors=True, disappear_after=1)
    with pytest.raises(android_bench.DeviceLost, match="error: device not found"):
        phone.run()


def test_noexec_storage(phone, tmp_path):
    phone.save(noexec=True)
    with pytest.raises(android_bench.NotExecutable, match="mounted noexec"):
        phone.run(output_dir=tmp_path / "out")
    assert phone.remote_runs() == []


def test_binary_for_another_cpu(phone, tmp_path):
    x86 = write_executable(tmp_path / "x86_benchmark_model", b"\x7fELF\x02\x01\x01" + bytes(60))
    with pytest.raises(android_bench.NotExecutable, match="not a program for the CPU of "
                       f"{SERIAL} \\(arm64-v8a\\): the device says .*: Exec format error"):
        phone.run(benchmark_binary=x86)
    assert phone.remote_runs() == []


def test_keyboard_interrupt_cleans_up(phone, tmp_path, monkeypatch):
    def interrupted(text):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark_tool, "parse", interrupted)
    with pytest.raises(KeyboardInterrupt):
        phone.run(output_dir=tmp_path / "out")
    assert phone.remote_runs() == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output_dir", [True, False])
def test_op_profiling_csv_pulled_back(phone, tmp_path, output_dir):
    out = tmp_path / "out" if output_dir else None
    result, = phone.run(enable_op_profiling=True, output_dir=out)
    csv = pathlib.Path(result.extra["op_profile_csv"])
    assert csv.read_text() == "node type,avg ms\nCONV_2D,0.5\n"
    if output_dir:
        assert csv.parent == out and csv.name.startswith("student_int8-run-")
    assert "--enable_op_profiling=true" in phone.bench_calls()[0]
    assert phone.remote_runs() == []


def test_taskset_pins_the_tool(phone, tmp_path):
    result, = phone.run(taskset="f0")
    assert result.extra["remote_command"].startswith("taskset f0 /data/local/tmp/tfkd/run-")
    assert (tmp_path / "taskset.log").read_text() == "f0\n"
    with pytest.raises(ValueError, match="hex CPU mask"):
        phone.run(taskset="f0; reboot")


def test_model_name_is_quoted_not_run(phone, tmp_path):
    name = "my model $(touch INJECTED) `reboot`; reboot 'q'.tflite"
    phone.model = tmp_path / name
    phone.model.write_bytes(b"model bytes")
    result, = phone.run()
    graph = next(a for a in phone.bench_calls()[0] if a.startswith("--graph="))
    # Copied under a fixed name: the local name never reaches the phone's shell.
    assert graph == f"--graph={phone.root}{result.extra['remote_dir']}/model.tflite"
    assert result.model_path == str(phone.model)
    assert not (tmp_path / "REBOOTED").exists()
    assert not list(tmp_path.rglob("INJECTED"))
    assert phone.remote_runs() == []


def test_hot_battery_is_warned_about(phone, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_BATTERY_TENTHS", "452")
    result, = phone.run()
    assert result.device["battery_temp_c"] == 45.2
    assert "throttling" in result.extra["warnings"][0]
    assert "45.2 C" in caplog.text


def test_bad_arguments_fail_before_adb(phone):
    for kwargs, match in [({"delegate": ("tpu",)}, "unknown delegates \\['tpu'\\]; choose "
                                                   "from xnnpack, gpu, nnapi, none"),
                          ({"num_runs": 0}, "num_runs must be an int >= 1"),
                          ({"threads": (0,)}, "threads=\\(0,\\); pass positive integers"),
                          ({"timeout_s": 0}, "timeout_s=0; pass a positive number"),
                          ({"taskset": "f0; reboot"}, "hex CPU mask")]:
        with pytest.raises(ValueError, match=match):
            phone.run(**kwargs)
    with pytest.raises(FileNotFoundError, match="no model file"):
        android_bench.run(phone.tmp / "missing.tflite")
    assert phone.calls() == []


def test_cli_happy_path(phone, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([str(phone.model), "--threads", "1,2", "--delegates", "xnnpack,gpu",
                 "--benchmark_binary", str(phone.binary), "--num_runs", "10",
                 "--output_dir", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{SERIAL}: samsung SM-G973F, Android 12 (SDK 31), arm64-v8a" in captured.out
    assert "mean ms  median ms  p95 ms  peak MB" in captured.out
    assert "student_int8.tflite  2        gpu" in captured.out
    assert f"results appended to {out / 'results.jsonl'}" in captured.out
    assert len(read_jsonl(out / "results.jsonl")) == 4


def test_cli_errors_exit_2_without_traceback(phone, tmp_path, capsys):
    assert main([str(tmp_path / "missing.tflite")]) == 2
    assert "android_bench: error: no model file at" in capsys.readouterr().err
    phone.save(devices=[])
    assert main([str(phone.model)]) == 2
    err = capsys.readouterr().err
    assert "adb sees no Android device" in err and "Traceback" not in err
    assert main([]) == 2
    assert "give the .tflite model" in capsys.readouterr().err


def test_cli_run_failure_exits_1(phone, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_BENCH_EXIT", "3")
    assert main([str(phone.model), "--benchmark_binary", str(phone.binary),
                 "--output_dir", str(phone.tmp / "out")]) == 1
    assert "benchmark_model failed (on adb:R58M123ABC, threads=1, delegate=xnnpack, exit " \
        "status 3)" in capsys.readouterr().err


def test_cli_list_devices(phone, capsys):
    assert main(["--list_devices"]) == 0
    assert capsys.readouterr().out.startswith(f"{SERIAL}\tdevice\tusb:1-1 product:beyond1lte")


def test_cli_list_devices_says_what_to_do_about_each_device_not_ready(phone, capsys):
    phone.save(devices=[device_entry(SERIAL, "device"), device_entry("0123AB", "unauthorized"),
                        device_entry("emulator-5554", "offline")])
    assert main(["--list_devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{SERIAL}\tdevice") and not lines[1].startswith(f"{SERIAL}")
    advice = [line for line in lines if line.startswith("  -> ")]
    assert len(advice) == 2
    assert "device 0123AB is not ready (state 'unauthorized'): unlock the phone and accept the " \
        "'Allow USB debugging?'" in advice[0]
    assert "device emulator-5554 is not ready (state 'offline'): replug the cable" in advice[1]
    phone.save(devices=[])
    assert main(["--list_devices"]) == 0
    assert "no devices attached: connect a phone with USB debugging on" in capsys.readouterr().out


def test_cli_help_gives_examples_and_every_flags_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "examples:\n  python -m android_bench --list_devices" in text
    assert "--threads 1,4 --delegates xnnpack,gpu" in text
    from android_bench.__main__ import _parser
    options = [a for a in _parser()._actions if a.option_strings and a.dest != "help"]
    lacking = [a.option_strings[0] for a in options if not a.help
               or ("(default:" not in a.help and not a.help.startswith("deprecated")
                   and a.dest != "list_devices")]
    assert len(options) == 16 and lacking == []
    assert all(a.option_strings[0] in text for a in options)


def test_cli_deprecated_delegate_flags_still_work_with_a_one_line_notice(phone, tmp_path,
                                                                          capsys):
    out = tmp_path / "out"
    code = main([str(phone.model), "--use_gpu", "--benchmark_binary", str(phone.binary),
                 "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    notices = [line for line in err.splitlines() if "deprecated" in line]
    assert notices == ["android_bench: --use_gpu is deprecated; use --delegates xnnpack,gpu"]
    assert [r.delegate for r in read_jsonl(out / "results.jsonl")] == ["xnnpack", "gpu"]
    assert main([str(phone.model), "--no_xnnpack", "--delegates", "gpu"]) == 2
    assert "pass --delegates alone, not with --no_xnnpack" in capsys.readouterr().err


def test_cli_bad_delegate_exits_2_with_the_names(phone, capsys):
    assert main([str(phone.model), "--delegates", "xnnpack,tpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown delegates ['tpu']; choose from xnnpack, gpu, nnapi, none" in err
    assert phone.calls() == []


def test_cli_help_names_the_delegates_of_tfkd_bench(capsys):
    assert DELEGATE_WORDS == bench.DELEGATES
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"from {', '.join(bench.DELEGATES)}" in " ".join(capsys.readouterr().out.split())


def test_run_delegates_keyword_is_deprecated_and_gives_the_same_results(phone):
    with pytest.warns(DeprecationWarning, match=r"android_bench.run\(delegates=...\) is "
                                                "deprecated; pass delegate="):
        old = phone.run(delegates=("xnnpack", "gpu"))
    new = phone.run(delegate=("xnnpack", "gpu"))
    settings = [[(r.threads, r.delegate, r.mean_ms) for r in results] for results in (old, new)]
    assert settings[0] == settings[1] == [(1, "xnnpack", 4.0), (1, "gpu", 4.0)]
    flags = [[a for a in args if not a.startswith("--graph=")] for args in phone.bench_calls()]
    assert flags[:2] == flags[2:] and flags[0] != flags[1]


def test_tfkd_bench_run_reaches_the_phone(phone):
    """tfkd.bench.run(target="adb:SERIAL") and target="adb" use the adb target directly."""
    for target in (f"adb:{SERIAL}", "adb"):
        results = bench.run(str(phone.model), target, threads=(1, 4), num_runs=20,
                            benchmark_binary=str(phone.binary), delegate="xnnpack")
        assert [(r.target, r.threads, r.mean_ms) for r in results] == [
            (f"adb:{SERIAL}", 1, 4.0), (f"adb:{SERIAL}", 4, 1.0)]
        assert phone.remote_runs() == []


@pytest.mark.parametrize("delegate, flags", [
    ("xnnpack", ["--use_xnnpack=true"]), ("gpu", ["--use_gpu=true", "--use_xnnpack=false"]),
    ("nnapi", ["--use_nnapi=true", "--use_xnnpack=false"]), ("none", ["--use_xnnpack=false"])])
def test_each_delegate_word_reaches_the_phone_as_the_tools_flags(phone, delegate, flags):
    result, = bench.run(str(phone.model), "adb", threads=2, delegate=delegate,
                        benchmark_binary=str(phone.binary))
    args = phone.bench_calls()[0]
    assert [a for a in args if a.startswith("--use_")] == flags
    assert result.delegate == delegate and result.extra["argv"][2:] == args[1:]  # after --graph


def test_the_adb_target_runs_every_delegate_and_only_benchmark_model(phone):
    with pytest.raises(ValueError, match="tool='litert' cannot run on target 'adb'; choose one "
                                         "of \\('benchmark_model',\\)"):
        bench.run(str(phone.model), "adb", tool="litert")
    with pytest.raises(ValueError, match="takes no settings \\['python'\\]"):
        bench.run(str(phone.model), "adb", python="python3")
    assert phone.calls() == []


def test_public_names_are_tfkd_benchs_own_objects():
    from tfkd.bench.targets import adb_errors
    for name in ("AdbError", "AdbNotFound", "AdbTimeout", "DeviceLost", "DeviceNotReady",
                 "MultipleDevices", "NoDevice", "NotExecutable", "RemoteCommandFailed"):
        assert getattr(android_bench, name) is getattr(adb_errors, name)
    assert android_bench.Device is adb_lib.Device
    assert android_bench.list_devices is adb_lib.list_devices
    assert android_bench.run.__module__ == "android_bench.runner"
    assert set(android_bench.__all__) >= {"run", "list_devices", "Device", "format_table"}


def test_importing_android_bench_loads_no_tensorflow():
    """`import android_bench` stays instant: its names load on first use."""
    code = "import sys, android_bench; assert 'tfkd' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
