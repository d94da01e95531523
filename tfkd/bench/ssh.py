"""Benchmarks on a Raspberry Pi or any Linux board over ssh: `target="ssh:user@host[:port]"`.

    results = run("student_int8.tflite", "ssh:pi@raspberrypi.local", threads=(1, 4))
    results = run("student_int8.tflite", "ssh:pi@192.168.1.20:2222", method="python")

Two methods:
    "benchmark_model": copies the official TFLite benchmark tool for the board's CPU (from
        `benchmark_binary=`, else the fetch cache, downloading it once) and parses its output
        with `tfkd.bench.benchmark_tool.parse`;
    "python": copies `remote_runner.py`, which times the model in-process with whichever of
        ai_edge_litert, tflite_runtime or tensorflow the board's `python` has.

Over one ssh login (a shared connection): one command creates a private folder (`mktemp -d
/tmp/tfkd-XXXXXX`: under /tmp, so even a crash leaves nothing after a reboot) and describes the
board, one scp copies into it, one command runs per thread count, and one removes the folder,
also after a failure, a timeout or Ctrl-C (killing a benchmark still running). The model is
copied under the fixed name `model.tflite`, so its local name never reaches a remote shell, and
`BenchResult.model_path` is the LOCAL path. Every other word is quoted with `shlex.quote`.

Authentication is by key only (BatchMode=yes) and host keys are checked as ssh always does:
to skip the check, pass ssh_options=("StrictHostKeyChecking=accept-new",) knowingly.
"""

import dataclasses
import json
import os
import pathlib
import re
import shlex
import warnings

import tfkd.bench as bench  # the package is initialized before this module is imported
from tfkd.bench import benchmark_tool, fetch, ssh_device
from tfkd.bench.benchmark_tool import BenchmarkFailed, UnparseableOutput
from tfkd.bench.results import BenchResult
from tfkd.bench.ssh_connection import (RemoteCommandFailed, SshAuthenticationError,
                                       SshConnection, SshConnectionError, SshError,
                                       SshHostKeyError, SshNotInstalled, SshTimeout, tail)

METHODS = ("benchmark_model", "python")
RUNNER = pathlib.Path(__file__).with_name("remote_runner.py")
_MODEL, _BINARY, _SCRIPT = "model.tflite", "benchmark_model", "runner.py"
_CLEANUP_TIMEOUT_S = 30
_NOT_FOUND, _NOT_EXECUTABLE = 127, 126

__all__ = ["METHODS", "RemoteCommandFailed", "SshAuthenticationError", "SshConnectionError",
           "SshError", "SshHostKeyError", "SshNotInstalled", "SshTimeout", "parse_target", "run"]


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


def run(model_path, target, *, method="benchmark_model", threads=(1,), num_runs=50,
        warmup_runs=5, min_secs=None, use_xnnpack=True, benchmark_binary=None,
        identity_file=None, config_file=None, ssh_options=(), connect_timeout_s=10,
        timeout_s=300, python="python3"):
    """Benchmarks a local .tflite on an ssh board, once per thread count.

    Args:
        model_path: the .tflite on this machine.
        target: "ssh:[user@]host[:port]"; recorded as given in `BenchResult.target`.
        method: "benchmark_model" or "python" (see the module docstring).
        threads: thread counts (an int or a sequence), one result each.
        num_runs, warmup_runs, min_secs: timed runs (at least `min_secs` seconds of them when
            given) and untimed warm-up runs.
        use_xnnpack: apply the XNNPACK delegate (False: the builtin kernels only).
        benchmark_binary: a local `benchmark_model` built for the board (method
            "benchmark_model"); default: the prebuilt for the board's `uname -m`, fetched once.
        identity_file: private key to log in with (only it is offered).
        config_file: ssh config file to read instead of ~/.ssh/config (`-F`; os.devnull: none).
        ssh_options: further 'Key=Value' ssh options, e.g. ("UserKnownHostsFile=/path",).
        connect_timeout_s: seconds to wait for the connection.
        timeout_s: limit for each remote command and copy.
        python: the Python on the board (method "python"): a command on its PATH or a path
            ("~/venv/bin/python" works).

    Returns:
        A list of stamped `BenchResult`, in the order of `threads`.

    Raises:
        ValueError: a bad argument (before anything is contacted).
        SshError and subclasses: the board could not be reached or a command could not run;
            the message says what to do.
        BenchmarkFailed: the benchmark ran and failed (an op the runtime lacks, ...).
    """
    threads = bench.thread_list(threads)
    settings = {"num_runs": num_runs, "warmup_runs": warmup_runs, "min_secs": min_secs,
                "use_xnnpack": use_xnnpack}
    _check_args(model_path, method, benchmark_binary, python, timeout_s, connect_timeout_s,
                ssh_options, threads, settings)
    user, host, port = parse_target(target)
    connection = SshConnection(host, user, port, identity_file, config_file, tuple(ssh_options),
                               connect_timeout_s)
    with connection.shared(timeout_s) as shared:
        device, run_dir = ssh_device.open_run_dir(shared, timeout_s)
        notes = ssh_device.throttle_warnings(device, host)
        job = _Job(shared, os.fspath(model_path), target, run_dir, device, timeout_s, notes)
        try:
            if method == "python":
                results = _run_python(job, threads, settings, python)
            else:
                results = _run_benchmark_model(job, threads, settings, benchmark_binary)
        except BaseException:
            _remove_run_dir(shared, run_dir, kill=True)
            raise
        _remove_run_dir(shared, run_dir, kill=False)
    return results


@dataclasses.dataclass
class _Job:
    connection: SshConnection
    model_path: str
    target: str
    run_dir: str
    device: dict
    timeout_s: float
    warnings: list

    def command(self, words, *, prepare=(), merge_stderr=False):
        """A remote command line that runs `words` in the run folder as its own process group
        leader (sshd makes the login shell one, and exec keeps its pid), recording that pid so
        that a timed-out run can be killed from another connection."""
        steps = [f"cd {shlex.quote(self.run_dir)}", *(_quoted(p) for p in prepare),
                 "echo $$ > pid", f"exec {_quoted(words)}" + (" 2>&1" if merge_stderr else "")]
        return " && ".join(steps)

    def result(self, fields, **extra):
        """A stamped BenchResult for this job from `fields`."""
        notes = [*extra.pop("warnings", []), *self.warnings]
        extra = {"host": self.connection.host, "remote_dir": self.run_dir, **extra}
        if notes:
            extra["warnings"] = notes
        return BenchResult(model_path=self.model_path, target=self.target, device=self.device,
                           extra=extra, **fields).stamped()


def _run_benchmark_model(job, threads, settings, benchmark_binary):
    binary, platform = _choose_binary(job.device, benchmark_binary)
    job.connection.push({_MODEL: job.model_path, _BINARY: binary}, job.run_dir, job.timeout_s)
    graph = f"{job.run_dir}/{_MODEL}"
    delegate = "xnnpack" if settings["use_xnnpack"] else "none"
    results = []
    for t in threads:
        args = benchmark_tool.build_args(graph, num_threads=t, **settings)
        command = job.command([f"./{_BINARY}", *args], prepare=[["chmod", "+x", _BINARY]],
                              merge_stderr=True)
        code, out, err = job.connection.run(command, job.timeout_s, what="benchmark_model")
        parsed = _parse_tool_output(job, code, out + err, binary)
        extra = dict(parsed.extra, argv=[f"{job.run_dir}/{_BINARY}", *args], raw_tail=tail(out),
                     binary=os.fspath(binary), platform=platform)
        if parsed.delegate not in (None, delegate):
            extra["reported_delegate"] = parsed.delegate  # what the tool says it used
        fields = {k: v for k, v in dataclasses.asdict(parsed).items()
                  if k not in ("model_path", "target", "device", "timestamp", "extra")}
        fields.update(tool=benchmark_tool.TOOL, runtime=benchmark_tool.TOOL, threads=t,
                      delegate=delegate, num_runs=settings["num_runs"],
                      warmup_runs=settings["warmup_runs"])
        results.append(job.result(fields, **extra))
    return results


def _choose_binary(device, benchmark_binary):
    """(local binary, platform name or None): the given one, else the cached prebuilt."""
    if benchmark_binary is not None:
        return os.fspath(benchmark_binary), None
    machine = device.get("machine") or ""
    if machine.lower() in ("aarch64", "arm64") and device.get("userland_bits") == 32:
        machine = "armv7l"  # a 64-bit kernel under a 32-bit userland (Raspberry Pi OS 32-bit)
    platform = fetch.platform_for_machine(machine)
    return os.fspath(fetch.fetch_benchmark_tool(platform)), platform


def _parse_tool_output(job, code, text, binary):
    """The parsed output; raises with the reason when the tool failed or could not start."""
    host = job.connection.host
    if code in (_NOT_FOUND, _NOT_EXECUTABLE):
        raise RemoteCommandFailed(
            f"{binary} could not be started on {host} (exit status {code}): it is probably "
            f"built for another CPU or OS than this board's ({job.device.get('machine')}, "
            f"{job.device.get('userland_bits')}-bit userland); pass benchmark_binary= one "
            "built for it", tail(text), text, code)
    try:
        parsed = benchmark_tool.parse(text)  # names the failure when the output shows one
    except BenchmarkFailed as error:
        raise BenchmarkFailed(f"{error.reason} (on {host}, exit status {code})",
                              error.tail) from None
    except UnparseableOutput:
        if code == 0:
            raise
    if code != 0:
        raise BenchmarkFailed(f"benchmark_model failed on {host} (exit status {code})",
                              tail(text))
    return parsed


def _run_python(job, threads, settings, python):
    job.connection.push({_MODEL: job.model_path, _SCRIPT: RUNNER}, job.run_dir, job.timeout_s)
    results = []
    for t in threads:
        words = [python, _SCRIPT, _MODEL, "--threads", t, "--num-runs", settings["num_runs"],
                 "--warmup-runs", settings["warmup_runs"]]
        words += ["--min-secs", settings["min_secs"]] if settings["min_secs"] else []
        words += [] if settings["use_xnnpack"] else ["--no-xnnpack"]
        code, out, err = job.connection.run(job.command(words), job.timeout_s,
                                            what="the python runner")
        report = _runner_report(job, code, out, err, python)
        job.device = dict(job.device, python=report.get("python"))
        fields = {k: report.get(k) for k in (*_TIMINGS, "count", "runtime", "runtime_version")}
        results.append(job.result(
            dict(fields, tool="python", threads=t, num_runs=settings["num_runs"],
                 warmup_runs=settings["warmup_runs"],
                 delegate="xnnpack" if settings["use_xnnpack"] else "none"),
            argv=[str(w) for w in words], numpy=report.get("numpy"),
            python=report.get("python")))
    return results


_TIMINGS = ("init_ms", "first_ms", "warmup_ms", "mean_ms", "median_ms", "p5_ms", "p95_ms",
            "std_ms", "min_ms", "max_ms", "memory_init_mb", "memory_overall_mb", "peak_memory_mb")


def _runner_report(job, code, out, err, python):
    """The runner's JSON result; raises with its error or what went wrong."""
    host = job.connection.host
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if isinstance(report, dict) and "error" in report:
        # No tail: BenchmarkFailed would label it benchmark_model output; the JSON says it all.
        trace = "".join(f"\n  {line}" for line in report.get("traceback", []))
        raise BenchmarkFailed(f"the python runner failed on {host} with {python}: "
                              f"{report['error']}{trace}")
    if code == _NOT_FOUND:
        raise RemoteCommandFailed(
            f"{python} was not found on {host}: install Python 3 there (sudo apt install "
            "python3 python3-pip; then pip install ai-edge-litert) or pass python= the path of "
            "the interpreter to use", tail(err), out, code)
    if code != 0 or not isinstance(report, dict) or report.get("mean_ms") is None:
        raise RemoteCommandFailed(
            f"the python runner printed no result on {host} (exit status {code}); it needs "
            f"Python 3.7+ with numpy: check `{python} --version` there", tail(err or out), out,
            code)
    return report


def _remove_run_dir(connection, run_dir, *, kill):
    """Removes the run folder; with `kill`, first kills a benchmark still running in it.

    A pid is killed only if that process still works in the run folder, so a pid reused by an
    unrelated process since is left alone.
    """
    d = shlex.quote(run_dir)
    script = f"rm -rf -- {d}"
    if kill:
        script = (f"p=$(cat {d}/pid 2>/dev/null); case $p in ''|*[!0-9]*) ;; *) "
                  f"[ \"$(readlink /proc/$p/cwd)\" = {d} ] && kill -s KILL -- -$p 2>/dev/null;; "
                  f"esac; {script}")
    try:
        code, _, err = connection.run(script, _CLEANUP_TIMEOUT_S, what="removing the run folder")
    except SshError as error:
        code, err = None, str(error)
    if code != 0:
        warnings.warn(f"could not remove {run_dir} on {connection.host} ({tail(err, 3)}); "
                      f"remove it by hand: ssh {connection.dest} rm -rf {run_dir}",
                      RuntimeWarning, stacklevel=3)


def _quoted(words):
    return " ".join(map(_word, words))


def _word(word):
    word = str(word)
    if word.startswith("~/"):  # the board's home is known only there: its shell expands it
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def _check_args(model_path, method, benchmark_binary, python, timeout_s, connect_timeout_s,
                ssh_options, threads, settings):
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {METHODS}")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"no model file at {model_path}; pass the path of a .tflite file")
    if method != "benchmark_model" and benchmark_binary is not None:
        raise ValueError("benchmark_binary is used by method='benchmark_model' only")
    if benchmark_binary is not None and not os.path.isfile(benchmark_binary):
        raise FileNotFoundError(f"benchmark_binary {benchmark_binary} does not exist; pass the "
                                "path of a benchmark_model built for the board")
    if not isinstance(python, str) or not python.strip():
        raise ValueError(f"python={python!r}; pass the board's Python command, e.g. 'python3'")
    for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}={value!r}; pass a positive number of seconds")
    if isinstance(ssh_options, str) or any(
            not isinstance(o, str) or not re.fullmatch(r"\w+[= ]\S.*", o) for o in ssh_options):
        raise ValueError(f"ssh_options={ssh_options!r}; pass a sequence of 'Key=Value' strings, "
                         "e.g. ('UserKnownHostsFile=/path/known_hosts',)")
    # build_args checks the counts for both methods, so both reject the same bad settings.
    benchmark_tool.build_args(_MODEL, num_threads=max(threads), **settings)
