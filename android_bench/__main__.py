"""python -m android_bench MODEL.tflite [--serial S] [--threads 1,4] [--delegates xnnpack,gpu] ...

Benchmarks a .tflite model on the attached Android phone, prints a table and appends the
results to OUTPUT_DIR/results.jsonl. Exit status: 0 done; 2 a mistake to fix before running
(bad flag, no adb, no or several or unready devices, no binary for the ABI); 1 the run failed
(tool failure, timeout, device lost); 130 interrupted. Errors are one message, no traceback.
"""

import argparse
import logging
import os
import sys

DEFAULT_OUTPUT_DIR = os.path.join("runs", "android_bench")
# tfkd.bench.DELEGATES, written out so that --help needs no TensorFlow (a test keeps them equal).
DELEGATE_WORDS = ("xnnpack", "gpu", "nnapi", "none")
_OLD_FLAGS = ("--use_gpu", "--use_nnapi", "--no_xnnpack")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of thread counts such as 1,4")
    return values


_EXAMPLES = """examples:
  python -m android_bench --list_devices
  python -m android_bench student_int8.tflite
  python -m android_bench student_int8.tflite --threads 1,4 --delegates xnnpack,gpu
  python -m android_bench student_int8.tflite --serial R58M123ABC --taskset f0 \\
      --enable_op_profiling --output_dir runs/phone
"""


def _parser():
    p = argparse.ArgumentParser(prog="python -m android_bench", description=__doc__.split(
        "\n\n")[1], epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the .tflite model on this machine")
    p.add_argument("--serial", help="the device to use (default: $ANDROID_SERIAL, else the "
                   "only one attached)")
    p.add_argument("--threads", type=_int_list, default=[1],
                   help="CPU thread counts, one run each, e.g. 1,4 (default: 1)")
    p.add_argument("--delegates", type=_word_list, default=None,
                   help=f"delegates, one run each, from {', '.join(DELEGATE_WORDS)} (builtin "
                        "CPU kernels), e.g. xnnpack,gpu (default: xnnpack)")
    p.add_argument("--use_gpu", action="store_true", help="deprecated: --delegates xnnpack,gpu")
    p.add_argument("--use_nnapi", action="store_true",
                   help="deprecated: --delegates xnnpack,nnapi")
    p.add_argument("--no_xnnpack", action="store_true", help="deprecated: --delegates none")
    p.add_argument("--taskset", help="hex CPU mask to pin the tool to, e.g. f0 (the big cores "
                   "of many phones) (default: no pinning)")
    p.add_argument("--enable_op_profiling", action="store_true",
                   help="also time each op; the CSVs land in --output_dir (default: off)")
    p.add_argument("--benchmark_binary", help="a benchmark_model built for the phone (default: "
                   "the official prebuilt for its ABI, cached or downloaded once)")
    p.add_argument("--num_runs", type=int, default=50,
                   help="timed runs per setting, at least (default: 50)")
    p.add_argument("--warmup_runs", type=int, default=5,
                   help="untimed runs before timing (default: 5)")
    p.add_argument("--min_secs", type=float, default=None, help="time for at least this many "
                   "seconds, beyond --num_runs (default: the tool's own, 1 s)")
    p.add_argument("--timeout_s", type=float, default=300,
                   help="limit in seconds for each adb command, runs included (default: 300)")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help="where results.jsonl is "
                   f"appended and op profiles go (default: {DEFAULT_OUTPUT_DIR})")
    p.add_argument("--adb", help="the adb executable (default: $ADB, else adb on PATH)")
    p.add_argument("--list_devices", action="store_true",
                   help="list the attached devices, with what to do about any not ready, "
                        "and exit")
    return p


def _word_list(text):
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise argparse.ArgumentTypeError(f"{text!r} names no delegate; e.g. xnnpack,gpu")
    return words


def _delegates(args):
    """The delegates asked for: --delegates, else what the deprecated flags mean."""
    old = [flag for flag in _OLD_FLAGS if getattr(args, flag[2:])]
    if old and args.delegates:
        raise ValueError(f"pass --delegates alone, not with {' '.join(old)}")
    if not old:
        return args.delegates or ["xnnpack"]
    chosen = ([] if args.no_xnnpack else ["xnnpack"]) + ["gpu"] * args.use_gpu \
        + ["nnapi"] * args.use_nnapi
    chosen = chosen or ["none"]
    print(f"android_bench: {' '.join(old)} is deprecated; use --delegates {','.join(chosen)}",
          file=sys.stderr)
    return chosen


def _print_devices(devices):
    from tfkd.bench.targets.adb_errors import not_ready_message

    if not devices:
        print("no devices attached: connect a phone with USB debugging on (Settings > "
              "Developer options), then check `adb devices`")
    for d in devices:
        pairs = " ".join(f"{k}:{v}" for k, v in d.properties.items())
        print(f"{d.serial}\t{d.state}\t{pairs}".rstrip())
        if d.state != "device":  # the same advice a run gives for this device
            print(f"  -> {not_ready_message(d.serial, d.state)}")


def _describe(info):
    soc = info.get("soc_model") or info.get("board_platform") or info.get("hardware")
    parts = [f"{info.get('manufacturer') or ''} {info.get('model') or ''}".strip() or None,
             f"Android {info['android_release']} (SDK {info.get('sdk')})"
             if info.get("android_release") else None, info.get("abi"),
             f"SoC {soc}" if soc else None,
             f"{info['cpu_count']} CPUs" if info.get("cpu_count") else None,
             f"battery {info['battery_temp_c']:g} C" if info.get("battery_temp_c") is not None
             else None]
    return f"{info['serial']}: " + ", ".join(p for p in parts if p)


def _benchmark(args):
    delegates = tuple(_delegates(args))
    from android_bench import output, runner  # imports TensorFlow: only when benchmarking

    results = runner.run(
        args.model, serial=args.serial, threads=tuple(args.threads),
        delegate=delegates, taskset=args.taskset,
        enable_op_profiling=args.enable_op_profiling, benchmark_binary=args.benchmark_binary,
        num_runs=args.num_runs, warmup_runs=args.warmup_runs, min_secs=args.min_secs,
        timeout_s=args.timeout_s, output_dir=args.output_dir, adb=args.adb)
    print(_describe(results[0].device))
    print(output.format_table(results))
    for r in results:
        if r.extra.get("op_profile_csv"):
            print(f"op profile (threads={r.threads}, {r.delegate}): {r.extra['op_profile_csv']}")
    print(f"results appended to {os.path.join(args.output_dir, output.RESULTS_FILE)}")


def main(argv=None):
    """Runs the command line; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    if not args.list_devices and not args.model:
        print("android_bench: error: give the .tflite model to benchmark (or --list_devices)",
              file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("android_bench: %(message)s"))
    logger = logging.getLogger("tfkd.bench")  # progress and warnings of the adb target
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        if args.list_devices:
            from tfkd.bench.targets import adb_client
            _print_devices(adb_client.list_devices(args.adb, timeout_s=args.timeout_s))
        else:
            _benchmark(args)
        return 0
    except KeyboardInterrupt:
        print("android_bench: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - only the expected kinds; the rest re-raise
        code = _exit_code(err)
        if code is None:
            raise
        notes = "".join(f"\n{n}" for n in getattr(err, "__notes__", []))
        print(f"android_bench: error: {err}{notes}", file=sys.stderr)
        return code
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _exit_code(err):
    """2 for mistakes to fix before running, 1 for failures during the run, None otherwise."""
    if "tfkd.bench" in sys.modules:  # else nothing ran that raises these
        from tfkd.bench.benchmark_tool import BenchmarkFailed, UnparseableOutput
        from tfkd.bench.fetch import BenchmarkToolUnavailable
        from tfkd.bench.targets import adb_errors as errors
        setup = (errors.AdbNotFound, errors.NoDevice, errors.MultipleDevices,
                 errors.DeviceNotReady, BenchmarkToolUnavailable)
        if isinstance(err, setup):
            return 2
        if isinstance(err, (errors.AdbError, BenchmarkFailed, UnparseableOutput)):
            return 1  # UnparseableOutput before ValueError: a subclass
    return 2 if isinstance(err, (ValueError, FileNotFoundError)) else None


if __name__ == "__main__":
    sys.exit(main())
