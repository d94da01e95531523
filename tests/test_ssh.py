"""The ssh target of tfkd.bench against a real OpenSSH server on 127.0.0.1 (tests/sshd.py): this
machine is the "board". Tool "litert" runs the real runner with the venv's Python;
benchmark_model is a stand-in shell script that prints what the real tool prints and records the
argv it got.
"""

import ast
import glob
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests import sshd
from tests.helpers import tiny_cnn
from tfkd import bench as tfkd_bench
from tfkd import export
from tfkd.bench import benchmark_tool, fetch, remote_runner, ssh
from tfkd.bench.benchmark_tool import BenchmarkFailed
from tfkd.bench.results import read_jsonl
from tfkd.bench.targets import ssh as ssh_target
from tfkd.bench.targets import ssh_connection, ssh_device

INJECTED = "INJECTED"
NASTY_NAME = f"my model $(touch {INJECTED}).tflite"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small int8 CNN, the kind of model a board runs."""
    calibration = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    path = tmp_path_factory.mktemp("models") / "int8.tflite"
    return export.to_tflite(tiny_cnn(16, 10), str(path), quantization="int8",
                            representative_data=calibration).path


@pytest.fixture
def run_dirs():
    """Checks that a test leaves no /tmp/tfkd-* folder behind."""
    before = set(glob.glob("/tmp/tfkd-*"))
    yield before
    assert set(glob.glob("/tmp/tfkd-*")) <= before, "the run folder was not removed"


# What benchmark_model prints (current LiteRT build), with the thread count it was given; the
# stand-in records its argv, working folder and that folder's files for the test to read.
STAND_IN = textwrap.dedent("""\
    #!/bin/sh
    printf '%s\\n' "$@" > {record}.argv
    pwd > {record}.cwd
    ls -A >> {record}.cwd
    threads=1
    for arg in "$@"; do
        case $arg in --num_threads=*) threads=${{arg#*=}};; --graph=*) graph=${{arg#*=}};; esac
    done
    [ -f "$graph" ] || {{ echo "ERROR: Could not open '$graph'."; exit 1; }}
    {body}
""")
GOOD_OUTPUT = """cat <<EOF
INFO: STARTING!
INFO: Num threads: [$threads]
INFO: Graph: [$graph]
INFO: #threads used for CPU inference: [$threads]
INFO: Use xnnpack: [1]
INFO: Loaded model $graph
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 0.0132
INFO: Initialized session in 3.1ms.
INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=5 first=812 curr=301 min=295 max=812 avg=402.2 std=201
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=3210 first=310 curr=298 min=290 max=640 avg=305.5 std=12 p5=292 median=300 p95=330
INFO: Inference timings in us: Init: 3100, First inference: 812, Warmup (avg): 402.2, Inference (avg): 305.5
INFO: Memory footprint delta from the start of the tool (MB): init=4.5 overall=6.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 9.75
EOF"""
FAILING_OUTPUT = 'echo "ERROR: Node number 3 (CONV_2D) failed to invoke."; ' \
                 'echo "ERROR: Benchmarking failed."; exit 1'
HANGING_OUTPUT = "echo 'INFO: STARTING!'; sleep 31.7; echo never"


def stand_in(folder, body=GOOD_OUTPUT, name="benchmark_model"):
    """A benchmark_model stand-in script; returns (its path, the prefix of its records)."""
    record = folder / "record"
    path = folder / name
    path.write_text(STAND_IN.format(record=record, body=body))
    path.chmod(0o755)
    return path, record


def bench(server, model, **kwargs):
    """tfkd.bench.run on the test board; tool "benchmark_model" unless told."""
    kwargs = {**server.client_options(), "timeout_s": 30, "tool": "benchmark_model",
              "threads": (1,), **kwargs}
    return tfkd_bench.run(model, kwargs.pop("target", server.target()), **kwargs)


# --- parse_target -------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [
    ("ssh:pi@raspberrypi.local", ("pi", "raspberrypi.local", None)),
    ("ssh:pi@192.168.1.20:2222", ("pi", "192.168.1.20", 2222)),
    ("ssh:board", (None, "board", None)),
    ("ssh:board:22", (None, "board", 22)),
    ("ssh:user@[::1]:2222", ("user", "::1", 2222)),
    ("ssh:[fe80::1%eth0]", (None, "fe80::1%eth0", None)),
    ("ssh://pi@pi4:2200", ("pi", "pi4", 2200)),
])
def test_parse_target_reads_user_host_and_port(target, expected):
    assert ssh.parse_target(target) == expected


@pytest.mark.parametrize("target, message", [
    ("pi@host", "not an ssh target"),
    ("adb:123", "not an ssh target"),
    ("ssh:", "bad host name ''"),
    ("ssh:pi@", "bad host name ''"),
    ("ssh:pi@host:0", "port must be a number from 1 to 65535"),
    ("ssh:pi@host:70000", "port must be a number from 1 to 65535"),
    ("ssh:pi@host:", "port must be a number"),
    ("ssh:pi@host:ssh", "cannot read host"),
    ("ssh:pi@::1", "IPv6 addresses need brackets"),
    ("ssh:-oProxyCommand=x", "bad host name"),
    ("ssh:p i@host", "bad user name"),
    ("ssh:pi@ho st", "bad host name"),
])
def test_parse_target_errors_show_the_form(target, message):
    with pytest.raises(ValueError, match="write it as 'ssh:user@host'") as info:
        ssh.parse_target(target)
    assert message in str(info.value)


def test_ipv6_hosts_are_bracketed_for_scp_only():
    if shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("ssh not installed: apt install openssh-client")
    connection = ssh_connection.SshConnection("::1", "pi", 2222)
    assert connection.ssh_argv("true")[-5:] == ["-l", "pi", "--", "::1", "true"]
    assert connection.scp_argv(["/m"], "/tmp/tfkd-abcdef")[-3:] == \
        ["--", "/m", "[::1]:/tmp/tfkd-abcdef/"]


# --- tool "litert" (the runner script), for real -------------------------------------------

def test_litert_runner_times_the_model_on_the_board(server, model, run_dirs):
    results = bench(server, model, tool="litert", threads=(1, 2), num_runs=20,
                    warmup_runs=3, python=sys.executable)
    assert [r.threads for r in results] == [1, 2]
    for r in results:
        assert (r.tool, r.target, r.model_path) == ("litert", server.target(), model)
        assert (r.runtime, r.delegate, r.count) == ("ai_edge_litert", "xnnpack", 20)
        assert r.runtime_version == remote_runner.find_runtime()[1]
        assert 0 < r.min_ms <= r.p5_ms <= r.median_ms <= r.p95_ms <= r.max_ms
        assert r.min_ms <= r.mean_ms <= r.max_ms and r.std_ms >= 0
        assert r.init_ms > 0 and r.first_ms > 0 and r.warmup_ms > 0
        assert r.peak_memory_mb > 10 and 0 <= r.memory_init_mb <= r.memory_overall_mb
        assert r.device["python"] == "%d.%d.%d" % sys.version_info[:3]
        assert r.extra["remote_dir"].startswith("/tmp/tfkd-") and r.timestamp
    device = results[0].device
    assert {"hostname", "system", "release", "machine", "processor", "cpu_count", "board", "os",
            "governor", "temperature_c", "throttled", "throttled_now"} <= set(device)
    assert device["machine"] == os.uname().machine and device["cpu_count"] == os.cpu_count()
    assert device["release"] == os.uname().release and device["system"] == "Linux"
    assert not os.path.exists(results[0].extra["remote_dir"])


@pytest.fixture(scope="module")
def server_without_sftp(tmp_path_factory):
    """A board whose sshd has no SFTP subsystem (Dropbear, stripped-down images)."""
    try:
        running = sshd.start(tmp_path_factory.mktemp("sshd_no_sftp"), sftp=False)
    except sshd.Unavailable as reason:
        pytest.skip(str(reason))
    yield running
    running.stop()


def test_a_board_without_sftp_is_copied_to_with_the_legacy_scp_protocol(
        server_without_sftp, model, run_dirs, caplog):
    with caplog.at_level(logging.INFO, logger="tfkd.bench"):
        (result,) = bench(server_without_sftp, model, tool="litert", num_runs=5,
                          python=sys.executable)
    assert result.mean_ms > 0 and result.target == server_without_sftp.target()
    assert "offers no SFTP subsystem; copying with scp -O (legacy protocol)" in caplog.text


def test_litert_runner_without_xnnpack_and_with_min_secs(server, model, run_dirs):
    (r,) = bench(server, model, tool="litert", delegate="none", num_runs=2, min_secs=0.2,
                 warmup_runs=0, python=sys.executable)
    assert r.delegate == "none" and r.count >= 2 and r.warmup_ms is None
    assert "--no-xnnpack" in r.extra["argv"] and "--min-secs" in r.extra["argv"]


def test_missing_python_on_the_board_says_what_to_install(server, model, run_dirs):
    with pytest.raises(ssh.RemoteCommandFailed, match="no-such-python was not found on "
                       f"{server.target()}: install Python 3 there"):
        bench(server, model, tool="litert", python="no-such-python")


def test_a_board_python_without_numpy_says_what_to_install(server, model, tmp_path, run_dirs):
    bare = tmp_path / "bare-python"  # no site-packages: the stdlib only, as on a fresh board
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    with pytest.raises(BenchmarkFailed, match=f"the python runner failed on {server.target()} "
                       f"with {bare}: numpy is not installed .*: pip install ai-edge-litert"):
        bench(server, model, tool="litert", python=str(bare))


# --- the runner on its own ----------------------------------------------------------------

def test_runner_tries_runtimes_in_order():
    modules = {"tflite_runtime.interpreter": "tflite interpreter module",
               "tflite_runtime": type("M", (), {"__version__": "2.14.0"}),
               "tensorflow": "never reached"}

    def fake_import(name):
        if name not in modules:
            raise ImportError(f"No module named {name!r}")
        return modules[name]

    assert remote_runner.find_runtime(fake_import) == ("tflite_runtime", "2.14.0",
                                                       "tflite interpreter module")
    with pytest.raises(remote_runner.RunnerError, match="pip install ai-edge-litert") as info:
        remote_runner.find_runtime(lambda name: fake_import("missing." + name))
    assert info.value.kind == "no_runtime" and "tried ai_edge_litert: no module" in \
        str(info.value).lower()


def _run_runner(model, blocked):
    """Runs the runner in a fresh Python where the `blocked` modules cannot be imported."""
    code = (f"import sys, runpy; sys.modules.update(dict.fromkeys({blocked!r})); "
            f"sys.argv = ['runner', {str(model)!r}, '--num-runs', '3']; "
            f"runpy.run_path({str(ssh.RUNNER)!r}, run_name='__main__')")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_runner_falls_back_to_tensorflow_when_litert_is_missing(model):
    code, report = _run_runner(model, ["ai_edge_litert", "tflite_runtime"])
    assert code == 0 and report["runtime"] == "tensorflow" and report["count"] == 3
    import tensorflow as tf
    assert report["runtime_version"] == tf.__version__ and report["mean_ms"] > 0


def test_runner_without_any_runtime_prints_a_json_error(model):
    code, report = _run_runner(model, ["ai_edge_litert", "tflite_runtime", "tensorflow"])
    assert code == remote_runner.ERROR_EXIT and report["kind"] == "no_runtime"
    assert "pip install ai-edge-litert" in report["error"]


def test_runner_reports_a_model_it_cannot_load(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    code, report = _run_runner(bad, [])
    assert code == remote_runner.ERROR_EXIT and report["kind"] == "model"
    assert "could not load the model" in report["error"]


@pytest.mark.parametrize("message, kind", [
    ("Encountered unresolved custom op: MyOp.\nNode number 0 (MyOp) failed to prepare.",
     "custom_op"),
    ("Select TensorFlow op(s), included in the given model, is(are) not supported", "flex"),
    ("Model provided has model identifier 'abcd', should be 'TFL3'", "model"),
])
def test_runner_explains_load_failures(message, kind):
    assert remote_runner._explain_load_failure(message)[0] == kind


def test_runner_is_standalone_python37():
    source = ssh.RUNNER.read_text()
    tree = ast.parse(source, feature_version=(3, 7))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in getattr(node, "names", [])}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"argparse", "importlib", "json", "platform", "sys", "time",
                        "traceback", "numpy", "resource"}, imported
    assert not any(isinstance(node, ast.JoinedStr) for node in ast.walk(tree))  # no f-strings


# --- tool "benchmark_model" with a stand-in tool -------------------------------------------

def test_benchmark_model_pushes_runs_and_parses(server, model, tmp_path, run_dirs):
    binary, record = stand_in(tmp_path)
    results = bench(server, model, threads=(1, 2), benchmark_binary=binary, num_runs=30)
    argv = pathlib.Path(f"{record}.argv").read_text().splitlines()
    cwd, *files = pathlib.Path(f"{record}.cwd").read_text().splitlines()
    assert cwd == results[1].extra["remote_dir"] and sorted(files) == ["benchmark_model",
                                                                       "model.tflite", "pid"]
    assert argv == benchmark_tool.build_args(f"{cwd}/model.tflite", num_threads=2, num_runs=30)
    for threads, r in zip((1, 2), results):
        assert (r.tool, r.runtime, r.threads, r.delegate) == ("benchmark_model",
                                                              "benchmark_model", threads,
                                                              "xnnpack")
        assert (r.model_path, r.target, r.num_runs, r.warmup_runs) == (model, server.target(),
                                                                       30, 5)
        assert (r.count, r.mean_ms, r.median_ms, r.init_ms) == (3210, 0.3055, 0.3, 3.1)
        assert (r.first_ms, r.warmup_ms, r.peak_memory_mb) == (0.812, 0.4022, 9.75)
        assert r.extra["benchmark_binary"] == str(binary)
        assert r.extra["delegation"] == {"xnnpack": "full"}
        assert r.device["machine"] == os.uname().machine


def test_the_binary_is_chosen_by_uname_from_the_fetch_cache(server, model, tmp_path,
                                                           monkeypatch, run_dirs):
    """A cached download (binary + sidecar) for the board's `uname -m` is pushed and run."""
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path / "cache"))
    platform = fetch.platform_for_machine(os.uname().machine)
    cached = fetch.cache_path(platform)
    cached.parent.mkdir(parents=True)
    script, record = stand_in(tmp_path)
    shutil.copy(script, cached)
    sidecar = {"platform": platform, "url": "file:///x", "sha256": fetch.sha256_of(cached),
               "size": cached.stat().st_size, "downloaded_at": None}
    cached.with_name("benchmark_model.json").write_text(json.dumps(sidecar))
    (r,) = bench(server, model)
    assert r.extra["benchmark_binary"] == str(cached) and r.extra["platform"] == platform
    assert pathlib.Path(f"{record}.argv").exists() and r.mean_ms == 0.3055


def test_a_binary_for_another_cpu_fails_clearly(server, model, tmp_path, monkeypatch, run_dirs):
    """A hand-placed binary (ELF magic only) is adopted by the cache but cannot execute."""
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path / "cache"))
    cached = fetch.cache_path(fetch.platform_for_machine(os.uname().machine))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"not a real tool\n" * 20)
    with pytest.raises(ssh.RemoteCommandFailed, match="could not be started on 127.0.0.1 "
                       r"\(exit status 126\): it is probably built for another CPU"):
        bench(server, model)


@pytest.mark.parametrize("machine, bits, platform", [
    ("x86_64", 64, "linux_x86-64"), ("aarch64", 64, "linux_aarch64"),
    ("aarch64", 32, "linux_arm"), ("armv7l", 32, "linux_arm")])
def test_platform_follows_uname_and_userland(machine, bits, platform):
    assert ssh_target.platform_for({"machine": machine, "userland_bits": bits}) == platform


def test_a_failing_tool_raises_and_cleans_up(server, model, tmp_path, run_dirs):
    binary, _ = stand_in(tmp_path, FAILING_OUTPUT)
    with pytest.raises(BenchmarkFailed, match=r"node 3 \(CONV_2D\) failed to invoke"):
        bench(server, model, benchmark_binary=binary)


def test_a_hanging_tool_times_out_fast_and_is_killed(server, model, tmp_path, run_dirs):
    binary, _ = stand_in(tmp_path, HANGING_OUTPUT)
    start = time.monotonic()
    with pytest.raises(ssh.SshTimeout, match=r"benchmark_model on 127.0.0.1 did not finish "
                       r"within timeout_s=2 s, so its ssh was killed; raise timeout_s"):
        bench(server, model, benchmark_binary=binary, timeout_s=2)
    assert time.monotonic() - start < 10
    assert not _processes_with("31.7"), "the hanging tool still runs on the board"


def _processes_with(argument):
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if argument.encode() in pathlib.Path(cmdline).read_bytes().split(b"\0"):
                found.append(cmdline)
        except OSError:
            pass
    return found


def test_ctrl_c_still_removes_the_run_folder(server, model, tmp_path, monkeypatch, run_dirs):
    def interrupted(text):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark_tool, "parse", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench(server, model, benchmark_binary=stand_in(tmp_path)[0])


def test_throttling_now_warns_and_is_recorded(server, model, tmp_path, monkeypatch, run_dirs):
    describe = ssh_device.describe
    monkeypatch.setattr(ssh_device, "describe",
                        lambda fields: describe({**fields, "throttled": "throttled=0x50005"}))
    with pytest.warns(RuntimeWarning, match=r"127.0.0.1 is throttled now \(under-voltage, "
                      r"throttled; vcgencmd get_throttled=0x50005\)"):
        (r,) = bench(server, model, benchmark_binary=stand_in(tmp_path)[0])
    assert r.device["throttled_since_boot"] == ["under-voltage", "throttled"]
    assert any("throttled now" in w for w in r.extra["warnings"])


def test_device_fields_are_decoded():
    fields = ssh_device.parse_fields("run_dir=/tmp/tfkd-abc123\nboard=Raspberry Pi 4 Model B "
                                     "Rev 1.4\nvc_temp=temp=61.8'C\nthrottled=throttled=0x80008\n"
                                     "os=\"Debian GNU/Linux 12 (bookworm)\"\nmem_kb=3884400\n"
                                     "max_khz=1800000\nlong_bit=32\nnoise line\n")
    device = ssh_device.describe(fields)
    assert device["board"] == "Raspberry Pi 4 Model B Rev 1.4" and device["temperature_c"] == 61.8
    assert device["throttled_now"] == ["soft temperature limit"] == device["throttled_since_boot"]
    assert device["os"] == "Debian GNU/Linux 12 (bookworm)" and device["memory_mb"] == 3793
    assert device["cpu_max_mhz"] == 1800 and device["userland_bits"] == 32
    assert ssh_device.describe({"zone_temp": "48312"})["temperature_c"] == 48.3


# --- quoting: nothing in a name may run ---------------------------------------------------

def test_names_with_shell_syntax_run_as_names(server, model, tmp_path, monkeypatch, run_dirs):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    nasty = tmp_path / NASTY_NAME
    shutil.copy(model, nasty)
    # The python command word too: a wrapper whose name is shell syntax.
    python = tmp_path / f"py; touch {INJECTED}2 $(touch {INJECTED}3) 'q\""
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    binary, record = stand_in(tmp_path, name=f"bm $(touch {INJECTED}4)")
    (a,) = bench(server, str(nasty), tool="litert", python=str(python), num_runs=3)
    (b,) = bench(server, str(nasty), benchmark_binary=binary)
    assert a.model_path == b.model_path == str(nasty) and a.mean_ms > 0 and b.mean_ms > 0
    cwd, *files = pathlib.Path(f"{record}.cwd").read_text().splitlines()
    assert INJECTED not in " ".join(files)
    places = [workdir, tmp_path, pathlib.Path.home(), pathlib.Path("/tmp"), pathlib.Path("/")]
    assert not [p for place in places for p in place.glob(f"{INJECTED}*")]


def test_remote_words_are_quoted_and_tilde_means_the_board_home():
    assert ssh_target.quote_words(["~/venv/bin/python", "a b", "$(x)", "--f=1"]) == \
        """"$HOME"/venv/bin/python 'a b' '$(x)' --f=1"""
    assert ssh_target.quote_words(["~/it's"]) == """"$HOME"/'it'"'"'s'"""


# --- ssh failures say what to do ----------------------------------------------------------

def test_a_key_the_board_does_not_accept(server, model, run_dirs):
    with pytest.raises(ssh.SshAuthenticationError, match="refused the login .*ssh-copy-id -p "
                       f"{server.port} {server.user}@127.0.0.1.* identity_file="):
        bench(server, model, identity_file=str(server.other_key))


def test_nothing_listening_on_the_port(server, model):
    port = sshd._free_port()
    with pytest.raises(ssh.SshConnectionError, match=f"nothing accepts ssh connections on "
                       f"127.0.0.1 port {port}: check the host and port, and that the ssh "
                       "server runs"):
        bench(server, model, target=server.target(port))


def test_an_unknown_host_key_is_refused(server, model, tmp_path, run_dirs):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ssh.SshHostKeyError, match=r"not in known_hosts, or has changed.*"
                       f"connect once by hand \\(ssh -p {server.port} "):
        bench(server, model, **server.client_options(known_hosts=empty))
    assert empty.read_text() == ""  # BatchMode: nothing was accepted behind the user's back


def test_an_unresolvable_host_name(server, model):
    with pytest.raises(ssh.SshConnectionError, match="cannot resolve the host name "
                       "no-such-board.invalid"):
        bench(server, model, target="ssh:pi@no-such-board.invalid")


def test_no_ssh_client_installed(model, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ssh.SshNotInstalled, match="apt install openssh-client"):
        ssh.run(model, "ssh:pi@board")


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "adb"}, "method='adb'; choose one of"),
    ({"tool": "litert", "benchmark_binary": "x"}, "benchmark_binary is used by"),
    ({"threads": (1, 0)}, "pass positive integers"),
    ({"num_runs": 0}, "num_runs must be an int >= 1"),
    ({"timeout_s": 0}, "timeout_s=0; pass a positive number"),
    ({"ssh_options": "Port=22"}, "sequence of 'Key=Value' strings"),
    ({"ssh_options": ("-oProxyCommand=x",)}, "sequence of 'Key=Value' strings"),
    ({"python": ""}, "python=''; pass the board's Python command"),
])
def test_bad_arguments_fail_before_connecting(model, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ssh.run(model, "ssh:pi@board.invalid", **kwargs)


def test_tfkd_bench_run_reaches_the_board(server, model, run_dirs):
    """tfkd.bench.run(target="ssh:...") times the model with the board's Python by default."""
    results = tfkd_bench.run(model, server.target(), threads=(1, 2), num_runs=10,
                             python=sys.executable, **server.client_options())
    assert [(r.target, r.threads, r.tool) for r in results] == [
        (server.target(), 1, "litert"), (server.target(), 2, "litert")]
    assert all(0 < r.min_ms <= r.median_ms <= r.max_ms for r in results)


# --- the delegate vocabulary and the older spellings ---------------------------------------

@pytest.mark.parametrize("delegate, flags", [
    ("xnnpack", ["--use_xnnpack=true"]), ("gpu", ["--use_gpu=true", "--use_xnnpack=false"]),
    ("none", ["--use_xnnpack=false"])])
def test_each_delegate_word_reaches_the_board_as_the_tools_flags(server, model, tmp_path,
                                                                  delegate, flags, run_dirs):
    binary, record = stand_in(tmp_path)
    (r,) = bench(server, model, benchmark_binary=binary, delegate=delegate)
    argv = pathlib.Path(f"{record}.argv").read_text().splitlines()
    assert [a for a in argv if a.startswith("--use_")] == flags
    assert r.delegate == delegate and r.extra["argv"][1:] == argv


def test_delegates_the_board_cannot_run_are_refused_before_connecting(model):
    with pytest.raises(ValueError, match="delegate='nnapi' cannot run with "
                       "tool='benchmark_model' on target 'ssh:pi@board.invalid', which runs "
                       "'xnnpack', 'gpu', 'none'; 'nnapi' runs with tool='benchmark_model' on "
                       "adb targets"):
        tfkd_bench.run(model, "ssh:pi@board.invalid", tool="benchmark_model", delegate="nnapi")
    with pytest.raises(ValueError, match="delegate='gpu' cannot run with tool='litert' on "
                       "target 'ssh:pi@board.invalid'"):
        tfkd_bench.run(model, "ssh:pi@board.invalid", delegate=("xnnpack", "gpu"))


def test_ssh_run_old_spellings_warn_and_give_the_same_result(server, model, run_dirs):
    options = {**server.client_options(), "timeout_s": 30, "num_runs": 3,
               "python": sys.executable}
    with pytest.warns(DeprecationWarning, match=r"ssh.run\(method='python'\) is deprecated; "
                                                "pass tool='litert'"):
        (old,) = ssh.run(model, server.target(), method="python", **options)
    with pytest.warns(DeprecationWarning, match=r"ssh.run\(use_xnnpack=False\) is deprecated; "
                                                "pass delegate='none'"):
        (none,) = ssh.run(model, server.target(), tool="litert", use_xnnpack=False, **options)
    (new,) = ssh.run(model, server.target(), tool="litert", **options)
    assert (old.tool, old.delegate) == (new.tool, new.delegate) == ("litert", "xnnpack")
    assert none.delegate == "none" and "--no-xnnpack" in none.extra["argv"]
    with pytest.raises(ValueError, match="is not an ssh target"):
        ssh.run(model, "adb:123")


def test_op_profiles_are_fetched_back_and_results_written(server, model, tmp_path, run_dirs):
    body = ('for a in "$@"; do case $a in --profiling_output_csv_file=*) '
            'printf "node type,avg ms\\nCONV_2D,0.2\\n" > "${a#*=}";; esac; done\n'
            + GOOD_OUTPUT)
    binary, _ = stand_in(tmp_path, body)
    out = tmp_path / "out"
    results = bench(server, model, benchmark_binary=binary, threads=(1, 2),
                    enable_op_profiling=True, output_dir=out)
    for r in results:
        csv = pathlib.Path(r.extra["op_profile_csv"])
        assert csv.parent == out and csv.read_text() == "node type,avg ms\nCONV_2D,0.2\n"
        assert csv.name.endswith(f"-t{r.threads}-xnnpack.csv")
    assert read_jsonl(out / "results.jsonl") == results
