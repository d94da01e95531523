"""`tfkd.bench.ssh.run`: benchmarks on an ssh board, as before the target layer existed.

    results = run("student_int8.tflite", "ssh:pi@raspberrypi.local", threads=(1, 4))
    results = run("student_int8.tflite", "ssh:pi@192.168.1.20:2222", tool="litert")

The same as `tfkd.bench.run(path, "ssh:...", tool=..., ...)` with this function's defaults (tool
"benchmark_model", timeout_s=300). The target itself is `tfkd.bench.targets.ssh`. The older
spellings `method="python"` / `method="benchmark_model"` and `use_xnnpack=` still work, each
with a DeprecationWarning.
"""

import tfkd.bench as bench  # the package is initialized before this module is imported
from tfkd.bench import settings as vocabulary
from tfkd.bench.targets.ssh import parse_target
from tfkd.bench.targets.ssh_errors import (RemoteCommandFailed, SshAuthenticationError,
                                           SshConnectionError, SshError, SshHostKeyError,
                                           SshNotInstalled, SshTimeout)
from tfkd.bench.tool_litert import RUNNER

# The older names of the tools: method -> tool.
METHODS = {"benchmark_model": "benchmark_model", "python": "litert"}

__all__ = ["METHODS", "RUNNER", "RemoteCommandFailed", "SshAuthenticationError",
           "SshConnectionError", "SshError", "SshHostKeyError", "SshNotInstalled", "SshTimeout",
           "parse_target", "run"]


def run(model_path, target, *, tool=None, threads=(1,), delegate="xnnpack", num_runs=50,
        warmup_runs=5, min_secs=None, benchmark_binary=None, identity_file=None,
        config_file=None, ssh_options=(), connect_timeout_s=10, timeout_s=300,
        python="python3", method=None, use_xnnpack=None):
    """Benchmarks a local .tflite on an ssh board; see `tfkd.bench.run` for the arguments.

    Args:
        tool: "benchmark_model" (the default here) or "litert" (the runner script).
        method: deprecated spelling of `tool` ("python" is "litert").
        use_xnnpack: deprecated; pass delegate="xnnpack" or "none".
        The others: as `tfkd.bench.run` and `tfkd.bench.targets.ssh.open`.

    Returns:
        A list of stamped `BenchResult`, threads-major.
    """
    parse_target(target)  # an adb or local target must not run here by mistake
    if method is not None:
        if method not in METHODS:
            raise ValueError(f"method={method!r}; choose one of {tuple(METHODS)} (or, "
                             "better, tool='benchmark_model' or tool='litert')")
        vocabulary.warn(f"ssh.run(method={method!r}) is deprecated; pass "
                        f"tool={METHODS[method]!r}", stacklevel=3)
        if tool not in (None, METHODS[method]):
            raise ValueError(f"pass tool= alone, not with method={method!r}")
        tool = METHODS[method]
    legacy = {} if use_xnnpack is None else {"use_xnnpack": use_xnnpack}
    delegate = vocabulary.take_legacy(legacy, delegate, "ssh.run")
    tool = tool or "benchmark_model"
    settings = {"min_secs": min_secs} if min_secs is not None else {}
    return bench.run(model_path, target, tool=tool, threads=threads, delegate=delegate,
                     num_runs=num_runs, warmup_runs=warmup_runs,
                     benchmark_binary=benchmark_binary, timeout_s=timeout_s,
                     identity_file=identity_file, config_file=config_file,
                     ssh_options=ssh_options, connect_timeout_s=connect_timeout_s,
                     python=python, **settings)
