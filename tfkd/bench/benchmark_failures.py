"""What in `benchmark_model` output says the run failed or did not measure what was asked.

Such a line (an op the binary lacks, a delegate that failed to apply or is unsupported, a node
that failed to invoke, "Benchmarking failed.") makes the run a failure even when timings were
printed: those timings are not of the model and delegate asked for (a failed XNNPACK delegate
silently falls back to the builtin kernels).
"""

import re

TAIL_LINES = 20
HOW_TO_GET = ("download one with tfkd.bench.fetch_benchmark_tool(platform) or pass "
              "--benchmark_binary=PATH (benchmark_binary= in Python)")


class BenchmarkFailed(RuntimeError):
    """`benchmark_model` failed, or ran without measuring what was asked.

    Attributes:
        reason: one line saying what went wrong and, where known, what to do.
        tail: the last lines of the tool's output.
    """

    def __init__(self, reason, tail=""):
        super().__init__(reason, tail)
        self.reason = reason
        self.tail = tail

    def __str__(self):
        if not self.tail:
            return self.reason
        return f"{self.reason}\nLast lines of benchmark_model output:\n{self.tail}"


class UnparseableOutput(ValueError):
    """The output has no timing this parser recognizes; `text` keeps the whole output.

    Attributes:
        text: the output.
        incomplete: True when no timing was found at all (a run cut off, or no run); False when
            timings were found but contradict each other.
    """

    def __init__(self, text, detail=""):
        self.text, self.incomplete = text, not detail
        what = not_a_benchmark(text) if not detail else None
        if what:
            message = (f"this is not benchmark_model output: {what}. tfkd reads the output of "
                       "LiteRT's benchmark_model tool")
        else:
            detail = f" ({detail})" if detail else ""
            message = (f"benchmark_model output has no recognizable timing{detail}: expected an "
                       "'Inference timings in us: ...' line or a 'count=N ... avg=...' "
                       "statistics line after the second 'Running benchmark for ...' line")
        super().__init__(f"{message}. Last lines of output:\n{tail(text) or '(no output)'}")


def tail(text, n=TAIL_LINES):
    """The last `n` non-blank lines of `text`."""
    return "\n".join([line.rstrip() for line in text.splitlines() if line.strip()][-n:])


# Failure markers, most specific first: the first that matches gives the reason (\1 etc. are
# the pattern's groups, {flex} the Flex ops named in "Node number N (FlexOp) failed" lines).
_FAILURES = tuple((re.compile(pattern), template) for pattern, template in (
    (r"Encountered unresolved custom op: ([^\s.]+)", r"the model uses custom op \1, which this "
     "benchmark_model lacks: export the model without custom ops, or build the tool with the op"),
    (r"Select TensorFlow op\(s\).*not supported|Regular TensorFlow ops are not supported",
     "the model uses Select TensorFlow (Flex) ops{flex}, which this benchmark_model cannot run: "
     "export with supported_ops=[TFLITE_BUILTINS(_INT8)] only, or use benchmark_model_plus_flex"),
    (r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", r"this benchmark_model has no "
     rf"kernel for \1 version \2; it is older than the model's converter: {HOW_TO_GET}"),
    (r"Op builtin_code out of range: (\d+)", r"this benchmark_model does not know builtin op "
     rf"code \1; it is older than the model's converter: {HOW_TO_GET}"),
    (r"Node number (\d+) \(([^)]+)\) failed to (prepare|invoke)", r"node \1 (\2) failed to \3"),
    (r"(?:Failed to apply|Ignoring failed application of) (?:the )?(.+?) delegate",
     r"failed to apply the \1 delegate, so the timings would not be of the delegate asked for"),
    (r"(GPU|NNAPI) acceleration is unsupported on this platform", r"the \1 delegate was asked "
     "for but is unsupported on this platform (the tool would have run on the CPU)"),
    (r"Disallowed CPU fallback detected", "the delegate did not take the whole graph"),
    (r"Failed to allocate tensors", "failed to allocate tensors"),
    (r"Could not open '([^']*)'", r"could not open or load the model \1"),
    (r"Failed to (?:mmap|load) model (.+)", r"could not open or load the model \1"),
    (r"Model provided has model identifier|not a valid Flatbuffer|model is not a valid",
     "the model is not a valid .tflite flatbuffer"),
    (r"Failed to construct interpreter|Failed to initialize the interpreter",
     "failed to construct the interpreter"),
    (r"Please specify the name of your TF Lite input file", "no --graph was given"),
    (r"Failed to invoke", "the interpreter failed to invoke the model"),
))


# Outputs people mistake for (or capture instead of) benchmark_model's, and what they are.
_NOT_BENCHMARKS = tuple((re.compile(pattern, re.I | re.M), what) for pattern, what in (
    (r"device unauthorized|unauthorized\b.*adb|\bunauthorized$",
     "adb says the phone is unauthorized: unlock it and accept the 'Allow USB debugging?' "
     "prompt, then run again"),
    (r"no devices/emulators found|error: device .*not found",
     "adb found no phone: connect one with USB debugging on (`adb devices` lists it)"),
    (r"permission denied|not executable|cannot execute|can't execute|exec format error",
     "the shell could not run the benchmark binary (permission denied or not executable): "
     "`chmod +x` it, run it from a folder mounted with exec (on Android /data/local/tmp), and "
     "use a binary built for the device's CPU"),
    (r"inaccessible or not found|: not found$|no such file or directory",
     "the shell found no benchmark binary or model at the path given"),
    (r"^\s*\{.*\"latency\"\s*:\s*\{.*\"avg_ms\"",
     "JSON from litert-benchmark (ai-edge-litert's CompiledModel benchmark); tfkd reads it "
     "with tfkd.bench.run(path, tool='litert-benchmark')"),
    (r"Reference run latency|Test run latency|Num evaluation runs",
     "output of LiteRT's inference_diff tool (it compares two runs, it does not benchmark)"),
    (r"average time:|^invoked$", "output of LiteRT's label_image example"),
    (r"Top-1 accuracy|top_1_accuracy",
     "output of an accuracy evaluation tool (imagenet_image_classification or similar)"),
))


def not_a_benchmark(text):
    """What `text` is when it is recognizably something other than benchmark_model output:
    adb's or the shell's errors, or another LiteRT tool's output; else None."""
    for pattern, what in _NOT_BENCHMARKS:
        if pattern.search(text or ""):
            return what
    return None


def failure_reason(lines):
    """The most specific failure the output's (severity, message) lines report, or None."""
    flex = sorted({m[1] for severity, msg, *_ in lines
                   for m in [re.match(r".*Node number \d+ \((Flex\w+)\)", msg, re.I)] if m})
    for pattern, template in _FAILURES:
        for severity, msg, *_ in lines:
            match = pattern.search(msg)
            if match:
                return match.expand(template).replace("{flex}", f" ({', '.join(flex)})"
                                                      if flex else "")
    fatal = [msg for severity, msg, *_ in lines if severity == "FATAL"]
    if fatal:
        return f"benchmark_model aborted: {fatal[0]}"
    if any(re.match("Benchmarking failed", msg, re.I) for severity, msg, *_ in lines):
        errors = [msg for severity, msg, *_ in lines
                  if severity == "ERROR" and not msg.startswith("Benchmarking failed")]
        return "benchmark_model failed" + (f": {errors[0]}" if errors else "")
    return None
