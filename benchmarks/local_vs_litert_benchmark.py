"""Does tfkd's in-process LiteRT benchmark agree with `litert-benchmark` on the same model?

    python benchmarks/local_vs_litert_benchmark.py [MODEL.tflite ...]

Without arguments it exports MobileNetV3-Small (random weights; latency does not depend on them)
at 32 and 64 pixels as float32 and int8 into a temporary folder. For each model and thread count
it alternates the two tools `--rounds` times, so machine drift hits both alike, and prints the
ratio of the medians of their per-round medians (target: within 15%, 0.87..1.15) as a table and
as JSON. litert-benchmark rounds to 0.01 ms, so sub-0.1 ms models read coarsely.
"""

import argparse
import json
import os
import statistics
import tempfile

import numpy as np

import tfkd
from tfkd import bench


def default_models(folder):
    paths = []
    calibration = np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype("float32")
    for size in (32, 64):
        model = tfkd.create_model("mobilenetv3_small", image_size=size, num_classes=10)
        for q in ("float32", "int8"):
            path = os.path.join(folder, f"mobilenetv3_small_{size}_{q}.tflite")
            tfkd.export.to_tflite(model, path, quantization=q,
                                  representative_data=calibration)
            paths.append(path)
    return paths


def compare(path, threads, rounds, num_runs):
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(bench.run(path, threads=threads, num_runs=num_runs)[0].median_ms)
        theirs.append(bench.run(path, threads=threads, tool="litert-benchmark",
                                num_runs=num_runs)[0].median_ms)
    local, reference = statistics.median(ours), statistics.median(theirs)
    return {"model": os.path.basename(path), "threads": threads, "local_median_ms": local,
            "litert_benchmark_median_ms": reference, "ratio": local / reference,
            "local_rounds_ms": ours, "litert_benchmark_rounds_ms": theirs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num_runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        models = args.models or default_models(folder)
        rows = [compare(m, t, args.rounds, args.num_runs) for m in models for t in (1, 2)]
    print(f"{'model':<34} {'thr':>3} {'local ms':>9} {'litert-benchmark ms':>20} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<34} {r['threads']:>3} {r['local_median_ms']:>9.3f} "
              f"{r['litert_benchmark_median_ms']:>20.3f} {r['ratio']:>6.3f}")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
