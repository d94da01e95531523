#!/usr/bin/env python3
"""Times a .tflite model with whatever TFLite runtime this machine has; `tfkd.bench.tool_litert`
copies it to a board (tool "litert" on an ssh target) and runs it there.

    python3 remote_runner.py model.tflite --threads 2 --warmup-runs 5 --num-runs 50

Standalone on purpose: the standard library and numpy only (tfkd is not on the board), and
Python 3.7 syntax (Raspberry Pi OS Buster ships 3.7), with no f-strings, so that an even older
Python still reads the file and reports its version instead of a SyntaxError.

Runtimes are tried in the order in which they are current: ai_edge_litert, tflite_runtime, then
tensorflow's tf.lite. Timing follows tfkd/bench/local.py: interpreter creation and tensor
allocation (init), one first invoke, warm-up invokes, then timed invokes cycling through a few
random inputs of each input's dtype (pixels 0..255, quantized for int8/uint8 inputs). Only
invoke() is timed.

The last line of stdout is ONE JSON object: the timings in ms, memory in MB, and the runtime
used; or {"error": ..., "kind": ...} with exit status 2.
"""

import argparse
import importlib
import json
import platform
import sys
import time
import traceback

# (name recorded, module with Interpreter, pip distribution).
RUNTIMES = (("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
            ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
            ("tensorflow", "tensorflow", "tensorflow"))
ERROR_EXIT = 2
NUM_INPUTS = 8  # distinct inputs cycled, so no cache sees one input again and again
INSTALL_HINT = ("pip install ai-edge-litert (it brings numpy; on 32-bit ARM, where it has no "
                "wheel, pip install tflite-runtime)")


class RunnerError(Exception):
    """A failure to report as JSON: `kind` is a short tag, the message says what to do."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


def find_runtime(import_module=importlib.import_module):
    """(name, version, module with an Interpreter class) of the first runtime that imports.

    Raises:
        RunnerError: none imports; the message says why each failed and what to install.
    """
    failures = []
    for name, module_name, dist in RUNTIMES:
        try:
            module = import_module(module_name)
        except Exception as e:  # a broken install (numpy ABI mismatch) is not always ImportError
            failures.append("{}: {}".format(name, str(e).splitlines()[0] if str(e) else
                                            type(e).__name__))
            continue
        if name == "tensorflow":
            module = module.lite
        return name, _version(name, dist, import_module), module
    raise RunnerError("no_runtime", "no TFLite runtime for {} ({}): {}. Tried {}".format(
        sys.executable, platform.python_version(), INSTALL_HINT, "; ".join(failures)))


def _version(name, dist, import_module):
    try:
        version = getattr(import_module(name), "__version__", None)
    except Exception:
        version = None
    if version:
        return str(version)
    try:
        import importlib.metadata as metadata  # Python 3.8+
        return metadata.version(dist)
    except Exception:
        return None


def load(module, path, threads, use_xnnpack):
    """An interpreter for `path` with tensors allocated; (interpreter, init time in ms)."""
    kwargs = {"model_path": path, "num_threads": threads}
    if not use_xnnpack:
        resolvers = getattr(module, "OpResolverType", None)
        if resolvers is None:
            raise RunnerError("unsupported", "this runtime cannot turn XNNPACK off (no "
                                             "OpResolverType); " + INSTALL_HINT)
        kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    start = time.perf_counter()
    try:
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except TypeError as e:
        raise RunnerError("unsupported", "this runtime is too old ({}): {}".format(e, INSTALL_HINT))
    except (RuntimeError, ValueError) as e:
        raise RunnerError(*_explain_load_failure(str(e)))
    return interpreter, 1e3 * (time.perf_counter() - start)


def _explain_load_failure(text):
    first = text.strip().splitlines()[0] if text.strip() else "no message"
    if "custom op" in text.lower():
        return ("custom_op", "the model uses a custom op this runtime lacks ({}): export it with "
                             "builtin ops only, or register the op".format(first))
    if "select tensorflow op" in text.lower() or "flex" in text.lower():
        return ("flex", "the model needs Select TensorFlow (Flex) ops, which this runtime lacks: "
                        "export with builtin ops only ({})".format(first))
    return ("model", "could not load the model: {}".format(" ".join(text.split())[:500]))


def random_inputs(details, seed=0):
    """`NUM_INPUTS` lists of arrays, one per input, realistic for each input's dtype."""
    import numpy as np
    rng = np.random.RandomState(seed)  # RandomState: numpy older than 1.17 has no default_rng
    sets = []
    for _ in range(NUM_INPUTS):
        arrays = []
        for detail in details:
            dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
            if dtype == np.bool_:
                arrays.append(rng.randint(0, 2, size=shape).astype(np.bool_))
                continue
            pixels = rng.randint(0, 256, size=shape).astype(np.float32)
            arrays.append(_to_dtype(pixels, dtype, detail.get("quantization", (0.0, 0))))
        sets.append(arrays)
    return sets


def _to_dtype(values, dtype, quantization):
    import numpy as np
    scale, zero_point = quantization
    if not np.issubdtype(dtype, np.integer) or not scale:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def timed_invokes(interpreter, inputs, runs, min_secs=0.0):
    """Milliseconds of each invoke: at least `runs` of them, over at least `min_secs` seconds."""
    indices = [d["index"] for d in interpreter.get_input_details()]
    times, begin = [], time.perf_counter()
    while len(times) < runs or time.perf_counter() - begin < min_secs:
        for index, array in zip(indices, inputs[len(times) % len(inputs)]):
            interpreter.set_tensor(index, array)
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def statistics(times_ms):
    """mean/median/p5/p95/std/min/max of the timed runs, as tfkd.bench.local computes them."""
    import numpy as np
    times = np.asarray(times_ms, dtype=np.float64)
    p5, median, p95 = np.percentile(times, [5, 50, 95])
    return {"mean_ms": float(times.mean()), "median_ms": float(median), "p5_ms": float(p5),
            "p95_ms": float(p95), "std_ms": float(times.std()), "min_ms": float(times.min()),
            "max_ms": float(times.max())}


def memory_mb(field):
    """VmRSS or VmHWM (peak resident memory) of this process in MB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    if field != "VmHWM":
        return None
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return peak / 2.0 ** 20 if sys.platform == "darwin" else peak / 1024.0  # bytes vs KiB


def benchmark(args):
    """The result dict of one run with the settings in `args`."""
    try:
        import numpy
    except ImportError:
        raise RunnerError("no_numpy", "numpy is not installed for {}: {}".format(
            sys.executable, INSTALL_HINT))
    name, version, module = find_runtime()
    start_mb = memory_mb("VmRSS")
    interpreter, init_ms = load(module, args.model, args.threads, not args.no_xnnpack)
    init_peak_mb = memory_mb("VmHWM")
    inputs = random_inputs(interpreter.get_input_details(), args.seed)
    first_ms = timed_invokes(interpreter, inputs, 1)[0]
    warm = timed_invokes(interpreter, inputs, args.warmup_runs) if args.warmup_runs else []
    timed = timed_invokes(interpreter, inputs, args.num_runs, args.min_secs)
    peak_mb = memory_mb("VmHWM")
    result = {"runtime": name, "runtime_version": version, "python": platform.python_version(),
              "numpy": numpy.__version__, "machine": platform.machine(), "count": len(timed),
              "init_ms": init_ms, "first_ms": first_ms,
              "warmup_ms": sum(warm) / len(warm) if warm else None,
              "memory_init_mb": _growth(init_peak_mb, start_mb),
              "memory_overall_mb": _growth(peak_mb, start_mb), "peak_memory_mb": peak_mb}
    result.update(statistics(timed))
    return result


def _growth(now_mb, start_mb):
    return None if now_mb is None or start_mb is None else max(0.0, now_mb - start_mb)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup-runs", type=int, default=5)
    parser.add_argument("--num-runs", type=int, default=50)
    parser.add_argument("--min-secs", type=float, default=0.0)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    """Runs the benchmark and prints its JSON line; returns the exit status."""
    args = parse_args(argv)
    try:
        if sys.version_info < (3, 7):
            raise RunnerError("old_python", "Python {} is too old; the runner needs 3.7+".format(
                platform.python_version()))
        print(json.dumps(benchmark(args)))
        return 0
    except RunnerError as e:
        print(json.dumps({"error": str(e), "kind": e.kind}))
    except Exception as e:
        lines = traceback.format_exc().strip().splitlines()
        print(json.dumps({"error": "unexpected {}: {}".format(type(e).__name__, e),
                          "kind": "internal", "traceback": lines[-6:]}))
    return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
