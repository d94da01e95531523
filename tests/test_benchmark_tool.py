"""Tests for tfkd.bench.benchmark_tool: argv building, output parsing, and running a fake tool.

The sample outputs below are written by hand after the tool's source (benchmark_model.cc,
benchmark_tflite_model.cc, the delegate providers, tsl's Stat::OutputToStream, logging.h); no
TensorFlow and no real benchmark_model are needed.
"""

import json
import os
import re
import stat
import sys
import textwrap

import pytest

from tfkd.bench import benchmark_tool
from tfkd.bench.benchmark_tool import BenchmarkFailed, UnparseableOutput, build_args, parse, run


def sample(text):
    return textwrap.dedent(text).lstrip("\n")


# A current LiteRT build: "INFO: " prefixes, percentiles, footprint delta and peak memory.
CURRENT = sample("""
    INFO: STARTING!
    INFO: Log parameter values verbosely: [0]
    INFO: Min num runs: [50]
    INFO: Num threads: [4]
    INFO: Min warmup runs: [5]
    INFO: Min warmup runs duration (seconds): [0]
    INFO: Report the peak memory footprint: [1]
    INFO: Graph: [/data/local/tmp/m.tflite]
    INFO: Signature to run: []
    INFO: #threads used for CPU inference: [4]
    INFO: Use xnnpack: [1]
    INFO: Loaded model /data/local/tmp/m.tflite
    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    INFO: XNNPACK delegate created.
    INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
    INFO: The input model file size (MB): 1.2
    INFO: Initialized session in 12.345ms.
    INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
    INFO: count=5 first=2100 curr=1210 min=1190 max=2100 avg=1380.2 std=357 p5=1190 median=1210 p95=2100

    INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    INFO: count=812 first=1250 curr=1180 min=1102 max=2456 avg=1231.45 std=88 p5=1120 median=1215 p95=1390

    INFO: Inference timings in us: Init: 12345, First inference: 2100, Warmup (avg): 1380.2, Inference (avg): 1231.45
    INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
    INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=9.75
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.25
    INFO: Memory status at the end of exeution:
    INFO: - VmRSS              : 15 MB
    INFO: + RssAnnon           : 9 MB
    INFO: + RssFile + RssShmem : 6 MB
""")

# A TF 2.x build of ~2021: no prefixes, no percentiles, "Peak memory footprint", "Num threads".
OLDER = sample("""
    STARTING!
    Log parameter values verbosely: [0]
    Min num runs: [30]
    Num threads: [2]
    Min warmup runs: [3]
    Graph: [/home/pi/student.tflite]
    Use xnnpack: [0]
    Loaded model /home/pi/student.tflite
    The input model file size (MB): 0.412
    Initialized session in 4.021ms.
    Running benchmark for at least 3 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=124 first=5123 curr=4012 min=3950 max=5123 avg=4030.2 std=110

    Running benchmark for at least 30 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=250 first=4001 curr=3990 min=3901 max=4820 avg=3998.7 std=65

    Inference timings in us: Init: 4021, First inference: 5123, Warmup (avg): 4030.2, Inference (avg): 3998.7
    Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
    Peak memory footprint (MB): init=2.4 overall=5.1
""")

# TF 1.x: "Average inference timings" with "no stats", and the old "Running benchmark" wording.
TF1 = sample("""
    STARTING!
    Num runs: [50]
    Inter-run delay (seconds): [-1]
    Num threads: [1]
    Graph: [mobilenet_v1_1.0_224_quant.tflite]
    Loaded model mobilenet_v1_1.0_224_quant.tflite
    resolved reporter
    Initialized session in 4.452ms
    Running benchmark for 1 iterations
    count=1 curr=146161

    Running benchmark for 50 iterations
    count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

    Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
""")


WARMUP_LINE = "count=3 first=1500 curr=1000 min=1000 max=1500 avg=1200 std=235"
SUMMARY_LINE = ("Inference timings in us: Init: 9000, First inference: 1500, Warmup (avg): 1200, "
                "Inference (avg): 1100.5")


def steady(stats_line, warmup_line=WARMUP_LINE, summary=SUMMARY_LINE):
    """A minimal complete output around one steady-state statistics line."""
    return sample(f"""
        INFO: STARTING!
        INFO: Graph: [/tmp/m.tflite]
        INFO: Initialized session in 9ms.
        INFO: Running benchmark for at least 3 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
        INFO: {warmup_line}

        INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
        INFO: {stats_line}

        INFO: {summary}
    """)


# --- parse: the format variants -----------------------------------------------------------------


def test_parse_current_format_converts_us_to_ms_and_reads_every_field():
    r = parse(CURRENT)
    assert (r.init_ms, r.first_ms, r.warmup_ms) == pytest.approx((12.345, 2.1, 1.3802))
    assert r.mean_ms == pytest.approx(1.23145)
    assert (r.median_ms, r.p5_ms, r.p95_ms) == pytest.approx((1.215, 1.12, 1.39))
    assert (r.std_ms, r.min_ms, r.max_ms) == pytest.approx((0.088, 1.102, 2.456))
    assert r.count == 812
    assert (r.memory_init_mb, r.memory_overall_mb, r.peak_memory_mb) == (3.5, 9.75, 14.25)
    assert (r.tool, r.model_path, r.threads, r.num_runs, r.warmup_runs) == (
        "benchmark_model", "/data/local/tmp/m.tflite", 4, 50, 5)
    assert r.delegate == "xnnpack"
    assert r.extra["delegation"] == {"xnnpack": "full"}
    assert r.extra["model_size_mb"] == 1.2
    assert r.extra["warmup_count"] == 5


def test_parse_older_format_has_no_percentiles_and_the_older_memory_wording():
    r = parse(OLDER)
    assert r.mean_ms == pytest.approx(3.9987)
    assert (r.min_ms, r.max_ms, r.std_ms, r.count) == (3.901, 4.82, 0.065, 250)
    assert (r.median_ms, r.p5_ms, r.p95_ms) == (None, None, None)
    assert (r.memory_init_mb, r.memory_overall_mb, r.peak_memory_mb) == (2.4, 5.1, None)
    assert (r.threads, r.num_runs, r.warmup_runs) == (2, 30, 3)
    assert r.delegate == "none"  # --use_xnnpack=false, and no other delegate


def test_parse_tf1_average_line_gives_the_mean_and_a_single_warmup_run():
    r = parse(TF1)
    assert (r.mean_ms, r.warmup_ms, r.init_ms) == pytest.approx((137.722, 146.161, 4.452))
    assert r.first_ms == pytest.approx(146.161)  # "count=1 curr=V": the one warm-up run took V
    assert (r.min_ms, r.max_ms, r.count) == (137.079, 143.416, 50)
    assert (r.memory_init_mb, r.peak_memory_mb, r.num_runs, r.delegate) == (None, None, None, None)
    assert r.threads == 1


def test_parse_all_same_statistics_line():
    r = parse(steady("count=50 curr=1100(all same) p5=1100 median=1100 p95=1100",
                     summary="Inference timings in us: Init: 9000, First inference: 1500, "
                             "Warmup (avg): 1200, Inference (avg): 1100"))
    assert (r.min_ms, r.max_ms, r.mean_ms, r.median_ms, r.p5_ms, r.p95_ms) == (1.1,) * 6
    assert (r.std_ms, r.count) == (0.0, 50)


def test_parse_all_same_without_summary_line_takes_the_mean_from_curr():
    r = parse(steady("count=1 curr=1100", summary=""))
    assert (r.mean_ms, r.median_ms, r.std_ms, r.count) == (1.1, 1.1, 0.0, 1)
    assert (r.first_ms, r.warmup_ms) == (1.5, 1.2)  # from the warm-up statistics line
    assert r.init_ms == 9.0  # from "Initialized session in 9ms."


def test_parse_no_warmup_runs_gives_none_not_the_zero_the_tool_prints():
    r = parse(steady("count=50 first=1200 curr=1100 min=1000 max=1300 avg=1100.5 std=40",
                     warmup_line="count=0 p5=0 median=0 p95=0",
                     summary="Inference timings in us: Init: 9000, First inference: 0, "
                             "Warmup (avg): -nan, Inference (avg): 1100.5"))
    assert (r.first_ms, r.warmup_ms) == (None, None)
    assert r.extra["warmup_count"] == 0
    assert r.mean_ms == pytest.approx(1.1005)


def test_parse_no_timed_runs_raises():
    text = steady("count=0 p5=0 median=0 p95=0",
                  summary="Inference timings in us: Init: 9000, First inference: 1500, "
                          "Warmup (avg): 1200, Inference (avg): nan")
    with pytest.raises(BenchmarkFailed, match=r"no timed runs \(count=0\)"):
        parse(text)


def test_parse_g_notation_and_non_finite_numbers():
    r = parse(steady("count=20 first=1.3e+06 curr=1240000 min=1190000 max=1.31e+06 avg=1.24027e+06 "
                     "std=inf p5=1.19e+06 median=1.24e+06 p95=1.3e+06",
                     summary="Inference timings in us: Init: 2.5e+06, First inference: 1.5e+06, "
                             "Warmup (avg): 1.2e+06, Inference (avg): 1.24027e+06"))
    assert (r.mean_ms, r.init_ms, r.max_ms, r.median_ms) == pytest.approx(
        (1240.27, 2500.0, 1310.0, 1240.0))
    assert r.std_ms is None  # inf is not a measurement


def test_parse_takes_statistics_after_the_last_running_line_not_from_op_profiling():
    text = CURRENT + sample("""
        INFO: Profiling Info for Benchmark Initialization:
        ============================== Run Order ==============================
        \t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
        \t ModifyGraphWithDelegate\t    4.120\t    4.120\t 95.000%\t 95.000%\t     0.000\t        1\tModifyGraphWithDelegate/0
        Timings (microseconds): count=1 curr=4337
        Memory (bytes): count=0
        2 nodes observed

        INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
        ============================== Run Order ==============================
        \t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
        \t TfLiteXNNPackDelegate\t    1.201\t    1.190\t100.000%\t100.000%\t     0.000\t        1\t[logits]:0
        ============================== Summary by node type ==============================
        \t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
        \t TfLiteXNNPackDelegate\t        1\t     1.190\t   100.000%\t   100.000%\t     0.000\t        1
        Timings (microseconds): count=812 first=9999 curr=9999 min=9000 max=99999 avg=9999 std=999
        Memory (bytes): count=0
        1 nodes observed
    """)
    r = parse(text)
    assert (r.mean_ms, r.min_ms, r.max_ms, r.count) == pytest.approx((1.23145, 1.102, 2.456, 812))


def test_parse_never_takes_an_op_profiling_count_line_for_the_steady_state_statistics():
    # A lost statistics line (logcat drops lines under load) must leave min/max/count None,
    # not pick up the "Timings (microseconds): count=..." summary of the op-profiling table.
    lines = [line for line in CURRENT.splitlines() if not line.startswith("INFO: count=812")]
    text = "\n".join(lines + ["Timings (microseconds): count=9 first=9 curr=9 min=9 max=99 avg=31"])
    r = parse(text)
    assert r.mean_ms == pytest.approx(1.23145)  # from the summary line
    assert (r.min_ms, r.max_ms, r.std_ms, r.count) == (None, None, None, None)


def test_parse_uses_the_last_running_block_when_the_warmup_block_has_the_only_stats_line_first():
    text = steady("count=50 first=1200 curr=1100 min=1000 max=1300 avg=1100.5 std=40")
    r = parse(text)
    assert (r.min_ms, r.max_ms, r.count) == (1.0, 1.3, 50)  # not the warm-up's 1000/1500/3
    assert r.extra["warmup_count"] == 3


def test_parse_only_warmup_block_is_not_steady_state():
    # Killed during the timed runs: the warm-up statistics must not pass for the result.
    text = CURRENT.split("INFO: Running benchmark for at least 50")[0]
    with pytest.raises(UnparseableOutput):
        parse(text)


def test_parse_interleaved_stdout_and_stderr_with_blank_lines_and_crlf():
    text = sample("""
        INFO: STARTING!

        INFO: Graph: [/tmp/m.tflite]
        WARNING: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.
        INFO: Num threads: [2]
        INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 seconds.

        INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
        INFO: count=1 curr=2000

        INFO: Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
        WARN: some other message from stderr
        INFO: count=10 first=1000 curr=900 min=850 max=1000 avg=910 std=40 p5=850 median=900 p95=1000

        INFO: Inference timings in us: Init: 3000, First inference: 2000, Warmup (avg): 2000, Inference (avg): 910
    """).replace("\n", "\r\n")
    r = parse(text)
    assert (r.mean_ms, r.median_ms, r.count, r.threads) == (0.91, 0.9, 10, 2)
    assert r.delegate == "xnnpack"  # the runtime's default delegate, from its creation line
    assert r.extra["warnings"] == [
        "Attempting to use a delegate that only supports static-sized tensors with a graph that "
        "has dynamic-sized tensors.", "some other message from stderr"]


def test_parse_android_logcat_threadtime_prefixes():
    text = "\n".join(f"11-21 10:15:02.{i:03d}  4567  4567 I tflite  : {line}"
                     for i, line in enumerate(CURRENT.replace("INFO: ", "").splitlines()))
    r = parse(text)
    assert (r.mean_ms, r.p95_ms, r.count, r.peak_memory_mb) == pytest.approx(
        (1.23145, 1.39, 812, 14.25))
    assert (r.model_path, r.threads) == ("/data/local/tmp/m.tflite", 4)


def test_parse_android_logcat_brief_prefixes_and_several_runs_in_the_buffer():
    both = OLDER + CURRENT.replace("INFO: ", "")
    text = "\r\n".join(f"I/tflite  ( 4567): {line}" for line in both.splitlines())
    r = parse(text)
    assert r.mean_ms == pytest.approx(1.23145)  # the last run in the buffer, not the earlier one
    assert (r.memory_init_mb, r.num_runs, r.delegate) == (3.5, 50, "xnnpack")
    assert r.extra["warmup_count"] == 5  # not the earlier run's warm-up block (count=124)


def test_parse_a_last_run_cut_off_mid_statistics_falls_back_to_the_last_whole_run():
    cut = CURRENT.split("INFO: Running benchmark for at least 50")[0] + (
        "INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate "
        "if exceeding 150 seconds.\nINFO: count=812 first=1250 curr=1180 min=11")
    r = parse(OLDER + cut)  # the phone was unplugged during the second run
    assert (r.mean_ms, r.count, r.threads) == pytest.approx((3.9987, 250, 2))
    assert r.extra["incomplete_runs"] == 1
    assert "1 later run(s) in this output stopped before their timings" in r.extra["warnings"][0]
    assert "incomplete_runs" not in parse(OLDER).extra
    with pytest.raises(UnparseableOutput, match="no recognizable timing"):
        parse(cut)  # no complete run at all


def test_parse_logcat_lines_in_the_shortened_form_of_the_tflite_docs():
    text = "\n".join(f"... tflite  : {line}" for line in CURRENT.replace("INFO: ", "").splitlines())
    r = parse(text)
    assert (r.mean_ms, r.median_ms, r.threads, r.init_ms) == pytest.approx(
        (1.23145, 1.215, 4, 12.345))
    only = "... tflite  : " + SUMMARY_LINE  # `adb logcat | grep "Inference timings"`
    assert parse(only).mean_ms == pytest.approx(1.1005)


# The Android benchmark app through `adb logcat -s tflite`: statistics lines, no headers; a
# newer app prints the percentiles on a line of their own.
APP_LOGCAT = sample("""
    12-01 09:14:55.101  8812  8840 I tflite  : count=12 first=21543 curr=14210 min=14012 max=21543 avg=15012.5 std=2011
    12-01 09:14:57.330  8812  8840 I tflite  : count=150 first=14330 curr=14190 min=13890 max=16550 avg=14275.1 std=301
    12-01 09:14:57.330  8812  8840 I tflite  : p5=13950 median=14240 p95=14820
""")


def test_parse_android_app_statistics_without_running_benchmark_headers():
    r = parse(APP_LOGCAT)
    assert (r.count, r.min_ms, r.max_ms, r.std_ms, r.mean_ms) == pytest.approx(
        (150, 13.89, 16.55, 0.301, 14.2751))
    assert (r.p5_ms, r.median_ms, r.p95_ms) == pytest.approx((13.95, 14.24, 14.82))
    assert (r.first_ms, r.warmup_ms, r.extra["warmup_count"]) == pytest.approx((21.543, 15.0125,
                                                                                12))
    lone = APP_LOGCAT.splitlines()[1]  # only the steady-state line kept
    assert parse(lone).count == 150 and parse(lone).first_ms is None


def test_parse_thread_count_from_the_tool_else_the_echoed_command_line():
    assert parse(CURRENT).threads == 4
    echoed = "$ adb shell /data/local/tmp/benchmark_model --graph=m.tflite --num_threads=3\n"
    assert parse(echoed + APP_LOGCAT).threads == 3
    assert parse(echoed + CURRENT).threads == 4  # the tool's own line wins
    assert parse(APP_LOGCAT).threads is None


@pytest.mark.parametrize("text, what", [
    ("error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n",
     "adb says the phone is unauthorized"),
    ("adb: no devices/emulators found\n", "adb found no phone"),
    ("/system/bin/sh: /data/local/tmp/benchmark_model: can't execute: Permission denied\n",
     "the shell could not run the benchmark binary"),
    ("bash: ./benchmark_model: cannot execute binary file: Exec format error\n",
     "the shell could not run the benchmark binary"),
    ('{"latency": {"avg_ms": 1.2, "min_ms": 1.1}, "accelerators": ["CPU"]}\n',
     "JSON from litert-benchmark"),
    ("Num evaluation runs: [50]\nReference run latency (avg): 1231 us\n",
     "output of LiteRT's inference_diff tool"),
    ("invoked\naverage time: 23.114 ms\n0.864: 653 military uniform\n",
     "output of LiteRT's label_image example"),
])
def test_parse_names_what_the_output_is_when_it_is_not_a_benchmark(text, what):
    with pytest.raises(UnparseableOutput, match=f"this is not benchmark_model output: {what}.*"
                                                "tfkd reads the output of LiteRT's "
                                                "benchmark_model tool") as err:
        parse(text)
    assert err.value.text == text


def test_parse_records_partial_delegation_and_tolerated_unknown_flags():
    text = CURRENT.replace(
        "and the model graph will be completely executed by the delegate.",
        "and the model graph will be partially executed by the delegate w/ 3 delegate kernels.")
    text = text.replace("INFO: Loaded model",
                        "WARN: Unconsumed cmdline flags: --report_peak_memory_footprint=true\n"
                        "INFO: Loaded model")
    r = parse(text)
    assert r.extra["delegation"] == {"xnnpack": "partial (3 delegate kernels)"}
    assert r.extra["unconsumed_flags"] == ["--report_peak_memory_footprint=true"]


def test_parse_refuses_output_of_a_tool_that_ignored_an_essential_flag():
    text = CURRENT.replace("INFO: Loaded model",
                           "WARN: Unconsumed cmdline flags: --use_xnnpack=true\nINFO: Loaded model")
    with pytest.raises(BenchmarkFailed, match=r"ignores --use_xnnpack=true") as err:
        parse(text)
    assert "fetch_benchmark_tool" in err.value.reason


def test_parse_gpu_delegate_with_xnnpack_for_the_rest():
    text = CURRENT.replace("INFO: Use xnnpack: [1]", "INFO: Use gpu: [1]\nINFO: Use xnnpack: [1]")
    assert parse(text).delegate == "gpu+xnnpack"


def test_parse_summary_and_statistics_disagreeing_is_unparseable():
    text = CURRENT.replace("Inference (avg): 1231.45", "Inference (avg): 1731.45")
    with pytest.raises(UnparseableOutput, match="disagree"):
        parse(text)


# --- parse: failures and unparseable output -----------------------------------------------------


CUSTOM_OP = sample("""
    INFO: STARTING!
    INFO: Graph: [/tmp/face.tflite]
    INFO: Loaded model /tmp/face.tflite
    ERROR: Encountered unresolved custom op: Landmarks2TransformMatrix.
    See instructions: https://www.tensorflow.org/lite/guide/ops_custom
    ERROR: Node number 12 (Landmarks2TransformMatrix) failed to prepare.
    ERROR: Failed to apply XNNPACK delegate.
    ERROR: Benchmarking failed.
""")

FLEX = sample("""
    INFO: STARTING!
    INFO: Loaded model /tmp/vit.tflite
    ERROR: Select TensorFlow op(s), included in the given model, is(are) not supported by this interpreter. Make sure you apply/link the Flex delegate before inference. For the Android, it can be resolved by adding "org.tensorflow:tensorflow-lite-select-tf-ops" dependency. See instructions: https://www.tensorflow.org/lite/guide/ops_select
    ERROR: Node number 3 (FlexErf) failed to prepare.
    ERROR: Failed to allocate tensors!
    ERROR: Benchmarking failed.
""")

OLD_BINARY = sample("""
    STARTING!
    Graph: [/tmp/m.tflite]
    ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be supported. Are you using an old TFLite binary with a newer model?

    ERROR: Registration failed.

    Failed to construct interpreter
    Benchmarking failed.
""")


@pytest.mark.parametrize("text, reason", [
    (CUSTOM_OP, r"custom op Landmarks2TransformMatrix"),
    (FLEX, r"Select TensorFlow \(Flex\) ops \(FlexErf\).*benchmark_model_plus_flex"),
    (OLD_BINARY, r"no kernel for FULLY_CONNECTED version 12.*fetch_benchmark_tool"),
    ("STARTING!\nGraph: [/nope.tflite]\nERROR: Could not open '/nope.tflite'.\n"
     "ERROR: Failed to mmap model /nope.tflite\nBenchmarking failed.\n",
     r"could not open or load the model /nope.tflite"),
    ("INFO: STARTING!\nINFO: Loaded model m.tflite\nERROR: Failed to allocate tensors!\n"
     "ERROR: Benchmarking failed.\n", r"failed to allocate tensors"),
    ("STARTING!\nFailed to construct interpreter\nBenchmarking failed.\n",
     r"failed to construct the interpreter"),
    ("INFO: STARTING!\nERROR: Node number 5 (CONV_2D) failed to invoke.\n"
     "ERROR: Benchmarking failed.\n", r"node 5 \(CONV_2D\) failed to invoke"),
    ("INFO: STARTING!\nERROR: Something unexpected happened.\nERROR: Benchmarking failed.\n",
     r"benchmark_model failed: Something unexpected happened."),
])
def test_parse_failures_raise_with_the_most_specific_reason(text, reason):
    with pytest.raises(BenchmarkFailed, match=reason) as err:
        parse(text)
    assert err.value.tail.splitlines()[-1].endswith("Benchmarking failed.")
    assert "Last lines of benchmark_model output:" in str(err.value)


@pytest.mark.parametrize("marker, reason", [
    ("ERROR: Failed to apply the default TensorFlow Lite delegate indexed at 0.",
     "failed to apply the default TensorFlow Lite delegate"),
    ("WARN: GPU acceleration is unsupported on this platform.",
     "GPU delegate was asked for but is unsupported"),
])
def test_parse_delegate_failure_raises_even_with_timings(marker, reason):
    # The numbers are real but of the builtin CPU kernels, not of the delegate asked for.
    text = CURRENT.replace("INFO: Loaded model", marker + "\nINFO: Loaded model")
    with pytest.raises(BenchmarkFailed, match=reason):
        parse(text)


def test_parse_failure_tail_is_the_last_twenty_lines():
    text = CURRENT.replace("INFO: Loaded model", "ERROR: Failed to allocate tensors!\nINFO: Loaded")
    with pytest.raises(BenchmarkFailed) as err:
        parse(text)
    tail = err.value.tail.splitlines()
    assert len(tail) == benchmark_tool.TAIL_LINES
    assert tail[-1] == "INFO: + RssFile + RssShmem : 6 MB"


@pytest.mark.parametrize("text", [
    "", "\n\n", "Segmentation fault (core dumped)\n",
    "INFO: STARTING!\nINFO: Graph: [/tmp/m.tflite]\nINFO: Loaded model /tmp/m.tflite\n",
])
def test_parse_unparseable_output_keeps_the_text_and_says_what_was_expected(text):
    with pytest.raises(UnparseableOutput, match=r"Inference timings in us") as err:
        parse(text)
    assert err.value.text == text
    last = text.strip().splitlines()[-1] if text.strip() else "(no output)"
    assert str(err.value).endswith(last)


# --- build_args ---------------------------------------------------------------------------------


def test_build_args_defaults():
    assert build_args("/x.tflite", num_threads=2) == [
        "--graph=/x.tflite", "--num_threads=2", "--num_runs=50", "--warmup_runs=5",
        "--warmup_min_secs=0", "--use_xnnpack=true", "--report_peak_memory_footprint=true"]


def test_build_args_everything():
    args = build_args("/my models/m.tflite", num_threads=4, num_runs=100, warmup_runs=0,
                      min_secs=2.5, delegate="gpu", enable_op_profiling=True,
                      profiling_output_csv_file="/tmp/ops.csv",
                      report_peak_memory_footprint=False, extra_args=["--max_secs=60"])
    assert args == [
        "--graph=/my models/m.tflite", "--num_threads=4", "--num_runs=100", "--warmup_runs=0",
        "--warmup_min_secs=0", "--min_secs=2.5", "--use_gpu=true", "--use_xnnpack=false",
        "--enable_op_profiling=true", "--profiling_output_csv_file=/tmp/ops.csv",
        "--max_secs=60"]


def test_build_args_old_delegate_flags_still_give_their_old_args_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"build_args\(use_xnnpack=False, use_gpu=True, "
                                                r"use_nnapi=True\) is deprecated; pass "
                                                "delegate= one of xnnpack, gpu, nnapi, none"):
        args = build_args("/m.tflite", num_threads=1, use_xnnpack=False, use_gpu=True,
                          use_nnapi=True)
    assert [a for a in args if a.startswith("--use_")] == [
        "--use_gpu=true", "--use_nnapi=true", "--use_xnnpack=false"]
    with pytest.warns(DeprecationWarning):
        assert build_args("/m.tflite", num_threads=1, use_xnnpack=False) == \
            build_args("/m.tflite", num_threads=1, delegate="none")
    with pytest.raises(ValueError, match="pass delegate= alone, not with \\['use_gpu'\\]"):
        build_args("/m.tflite", num_threads=1, delegate="gpu", use_gpu=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_threads=-1), r"num_threads must be an int >= 1, got -1; pass num_threads=1"),
    (dict(num_threads=0), r"num_threads must be an int >= 1, got 0"),
    (dict(num_threads=2.0), r"num_threads must be an int >= 1, got 2\.0"),
    (dict(num_threads=True), r"num_threads must be an int >= 1, got True"),
    (dict(num_threads=1, num_runs=0), r"num_runs must be an int >= 1, got 0"),
    (dict(num_threads=1, warmup_runs=-1), r"warmup_runs must be an int >= 0, got -1"),
    (dict(num_threads=1, min_secs=-1), r"min_secs must be a number >= 0"),
    (dict(num_threads=1, min_secs=float("nan")), r"min_secs must be a number >= 0"),
    (dict(num_threads=1, profiling_output_csv_file="/tmp/o.csv"),
     r"profiling_output_csv_file needs enable_op_profiling=True"),
    (dict(num_threads=1, extra_args="--max_secs=1"), r"extra_args must be a list"),
    (dict(num_threads=1, extra_args=["max_secs=1"]), r"each must be a '--flag=value' string"),
    (dict(num_threads=1, extra_args=["--num_threads=8"]),
     r"extra_args sets --num_threads, which build_args already sets; pass it as num_threads="),
    (dict(num_threads=1, delegate="cpu"), r"unknown delegates \['cpu'\]; choose from xnnpack"),
])
def test_build_args_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_args("/x.tflite", **kwargs)


def test_build_args_needs_a_graph_and_num_threads():
    with pytest.raises(ValueError, match="graph is empty"):
        build_args("", num_threads=1)
    with pytest.raises(TypeError, match="num_threads"):
        build_args("/x.tflite")


# --- run against a fake benchmark_model ---------------------------------------------------------


def fake_tool(tmp_path, output, code=0, body=""):
    """An executable that records its argv, prints `output`, runs `body` and exits with `code`."""
    (tmp_path / "out.txt").write_text(output)
    script = tmp_path / "benchmark_model"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, pathlib, signal, sys, time
        here = pathlib.Path(__file__).parent
        (here / "argv.json").write_text(json.dumps(sys.argv[1:]))
        sys.stdout.write((here / "out.txt").read_text())
        sys.stdout.flush()
        sys.stderr.write("INFO: stderr is merged\\n")
        sys.stderr.flush()
        {body}
        sys.exit({code})
    """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3")
    return str(path)


def test_run_passes_the_argv_and_fills_in_the_settings(tmp_path, model):
    tool = fake_tool(tmp_path, CURRENT)
    r = run(tool, model, num_threads=3, num_runs=20, warmup_runs=2)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == build_args(model, num_threads=3, num_runs=20, warmup_runs=2)
    assert r.extra["argv"] == [str(tool)] + argv
    assert (r.tool, r.target, r.runtime, r.model_path) == (
        "benchmark_model", "local", "benchmark_model", model)
    assert (r.threads, r.num_runs, r.warmup_runs, r.delegate) == (3, 20, 2, "xnnpack")
    assert r.mean_ms == pytest.approx(1.23145)
    assert r.extra["raw_tail"].splitlines()[-1] == "INFO: stderr is merged"
    assert r.timestamp and r.device["cpu_count"] == os.cpu_count()
    assert "reported_delegate" not in r.extra


def test_run_records_the_op_profiling_csv(tmp_path, model):
    body = ("csv = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--profiling_output')]\n"
            "        pathlib.Path(csv[0]).write_text('node type, first, avg_ms\\n')")
    tool = fake_tool(tmp_path, CURRENT, body=body)
    csv = str(tmp_path / "ops.csv")
    r = run(tool, model, num_threads=1, delegate="none", enable_op_profiling=True,
            profiling_output_csv_file=csv)
    assert r.extra["op_profile_csv"] == csv
    assert r.delegate == "none"  # as asked; the canned output claims XNNPACK, which is kept apart
    assert r.extra["reported_delegate"] == "xnnpack"


def test_run_nonzero_exit_raises_with_the_parsed_reason_and_tail(tmp_path, model):
    tool = fake_tool(tmp_path, CUSTOM_OP, code=1)
    with pytest.raises(BenchmarkFailed, match=r"custom op Landmarks2TransformMatrix.*exit status 1"
                       ) as err:
        run(tool, model, num_threads=1)
    assert "ERROR: Benchmarking failed." in err.value.tail


def test_run_nonzero_exit_without_a_known_reason(tmp_path, model):
    tool = fake_tool(tmp_path, CURRENT, code=3)
    with pytest.raises(BenchmarkFailed, match=r"benchmark_model failed \(exit status 3\)"):
        run(tool, model, num_threads=1)


def test_run_crash_names_the_signal(tmp_path, model):
    tool = fake_tool(tmp_path, "INFO: STARTING!\n", body="os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(BenchmarkFailed, match=r"killed by SIGSEGV"):
        run(tool, model, num_threads=1)


def test_run_times_out_and_kills_the_tool(tmp_path, model):
    tool = fake_tool(tmp_path, "INFO: STARTING!\n", body="time.sleep(30)")
    with pytest.raises(BenchmarkFailed, match=r"timed out after 0\.5 s") as err:
        run(tool, model, num_threads=1, timeout_s=0.5)
    assert "INFO: STARTING!" in err.value.tail


def test_run_missing_or_unusable_binary(tmp_path, model):
    with pytest.raises(FileNotFoundError,
                       match=r"fetch_benchmark_tool\(platform\).*--benchmark_binary"):
        run(tmp_path / "nope" / "benchmark_model", model, num_threads=1)
    with pytest.raises(FileNotFoundError, match="benchmark_model binary not found"):
        run("surely-no-such-benchmark-model-on-path", model, num_threads=1)
    with pytest.raises(ValueError, match="no benchmark_model binary given"):
        run(None, model, num_threads=1)
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    with pytest.raises(PermissionError, match="is not executable; run chmod"):
        run(plain, model, num_threads=1)


def test_run_missing_model_and_bad_settings(tmp_path):
    tool = fake_tool(tmp_path, CURRENT)
    with pytest.raises(FileNotFoundError, match="model not found"):
        run(tool, tmp_path / "missing.tflite", num_threads=1)
    with pytest.raises(ValueError, match="num_threads must be an int >= 1"):
        run(tool, tmp_path / "missing.tflite", num_threads=0)
    assert not (tmp_path / "argv.json").exists()  # nothing was run


@pytest.mark.parametrize("status, context, message", [
    (3, "", r"^benchmark_model failed \(exit status 3\)$"),
    (137, "on adb:X, threads=2, delegate=gpu",
     r"^benchmark_model failed \(on adb:X, threads=2, delegate=gpu, killed by SIGKILL \(out of "
     r"memory\?\)\)$"),
    (139, "", r"killed by SIGSEGV\)$"),
])
def test_check_output_says_where_and_how_the_tool_ended(status, context, message):
    with pytest.raises(BenchmarkFailed) as err:
        benchmark_tool.check_output(status, CURRENT, context)
    assert re.search(message, err.value.reason), err.value.reason


def test_check_output_names_the_failure_with_where_it_ran():
    with pytest.raises(BenchmarkFailed, match=r"custom op Landmarks2TransformMatrix.* \(on "
                                              r"ssh:pi@board, threads=1, delegate=xnnpack, "
                                              r"exit status 1\)"):
        benchmark_tool.check_output(1, CUSTOM_OP, "on ssh:pi@board, threads=1, delegate=xnnpack")
    assert benchmark_tool.check_output(0, CURRENT).mean_ms == pytest.approx(1.23145)
    with pytest.raises(UnparseableOutput):
        benchmark_tool.check_output(0, "INFO: STARTING!\n")
