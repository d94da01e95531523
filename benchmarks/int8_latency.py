"""`int8_latency`: what full-integer int8 export buys and costs, per model family.

    python benchmarks/run.py --only int8_latency     # ~4.5 min on an idle 2-core CPU

For one model of each family (`convnet_s`, `mobilenetv3_small`, `mobilevit_xxs`,
`efficientnet_b0`, `deit_micro`), all at 32x32: train briefly on a Fashion-MNIST subset, export
float32 and int8 TFLite (int8 calibrated on training images), time both with `tfkd.bench.run`
(LiteRT with XNNPACK, in this process) at 1 and 2 threads, and compare the float Keras model
with the int8 TFLite model on test images.

Latency: per (model, threads), int8 and float32 alternate round by round (which goes first
rotates); each round gives one `tfkd.bench.run` median over `num_runs` invokes, and the ratio is
the median of per-round int8/float32 ratios (below 1: int8 is faster). There is no target: on
x86 int8 is slower than float for some of these tiny models (DESIGN.md), and this reports it.

results.json value: a table, one row per (model, threads) with the columns
model, threads, float32_ms, int8_ms, int8_over_float32, float_acc_pct, int8_acc_pct, drop_pts
(the accuracy columns repeat on both thread rows of a model). Per-round samples, sizes, the ops
that stayed in float and the training settings are in `raw`.
"""

import os
import statistics
import tempfile
import time
import warnings

import keras

import timing
import tfkd

MODELS = ["convnet_s", "mobilenetv3_small", "mobilevit_xxs", "efficientnet_b0", "deit_micro"]
IMAGE_SIZE = 32
THREADS = (1, 2)
# Small batches: one epoch of 3,000 images is then ~94 updates, enough to lift every model well
# above chance (batches of 128 left three of five at 10%, where an accuracy drop means nothing).
BATCH_SIZE = 32
FULL = {"models": MODELS, "train_images": 3000, "epochs": 1, "test_images": 1000,
        "calibration_images": 200, "rounds": 7, "num_runs": 100}
# Two models that take different export paths: a CNN, and a ViT whose LayerNorms stay partly
# in float.
QUICK = {"models": ["convnet_s", "deit_micro"], "train_images": 256, "epochs": 1,
         "test_images": 128, "calibration_images": 32, "rounds": 2, "num_runs": 10}


def datasets(settings):
    """(train, test, calibration) Fashion-MNIST at IMAGE_SIZE; calibration is train images."""
    def load(split, limit, batch_size, **kwargs):
        return tfkd.data.load("fashion_mnist", split, image_size=IMAGE_SIZE,
                              batch_size=batch_size, limit=limit, **kwargs)

    train = load("train", settings["train_images"], BATCH_SIZE, seed=0)
    # Large batches: evaluation runs the Keras model eagerly, once per batch.
    test = load("test", settings["test_images"], 256)
    # Unshuffled and separate from `train`, as in the recipes (inputs.calibration_split).
    calibration = load("train", settings["calibration_images"], 256, shuffle=False)
    return train, test, calibration


def train(name, train_data, epochs):
    """A zoo model trained on the labels (Adam with cosine decay, as the recipes); (model, s)."""
    keras.utils.set_random_seed(0)
    model = tfkd.create_model(name, image_size=IMAGE_SIZE, num_classes=10)
    steps = epochs * sum(1 for _ in train_data)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(train_data, epochs=epochs, verbose=0, shuffle=False)  # tfkd.data shuffles
    return model, time.perf_counter() - start


def export_pair(model, folder, test, calibration, num_calibration):
    """Exports float32 and int8; returns ({quantization: path}, int8 CheckResult, float32 result).

    The int8 check evaluates float Keras against int8 TFLite on `test`, calibrated on training
    images only.
    """
    paths = {q: os.path.join(folder, f"{model.name}_{q}.tflite") for q in ("float32", "int8")}
    float32 = tfkd.export.to_tflite(model, paths["float32"], quantization="float32")
    with warnings.catch_warnings():
        # The drop is what this benchmark reports; a warning about it would only be noise.
        warnings.simplefilter("ignore", tfkd.export.QuantizationDropWarning)
        check = tfkd.export.export_and_check(model, paths["int8"], test, quantization="int8",
                                             representative_data=calibration,
                                             num_calibration_samples=num_calibration)
    return paths, check, float32


def time_pair(paths, threads, rounds, num_runs):
    """Per-round median latencies (ms) of each path, interleaved; {quantization: [ms, ...]}."""
    def bench(path):
        return lambda: tfkd.bench.run(path, threads=(threads,), num_runs=num_runs)[0].median_ms
    return timing.interleaved_values({q: bench(p) for q, p in paths.items()}, rounds=rounds)


def measure_model(name, data, settings, folder):
    """Trains, exports and times one model; returns (rows, raw)."""
    train_data, test, calibration = data
    model, train_s = train(name, train_data, settings["epochs"])
    start = time.perf_counter()
    paths, check, float32 = export_pair(model, folder, test, calibration,
                                        settings["calibration_images"])
    export_s = time.perf_counter() - start - check.eval_seconds
    start = time.perf_counter()
    rows, latency = [], {}
    for threads in THREADS:
        ms = time_pair(paths, threads, settings["rounds"], settings["num_runs"])
        latency[f"threads_{threads}"] = {f"{q}_median_ms": [timing.rounded(v) for v in values]
                                         for q, values in ms.items()}
        rows.append({
            "model": name, "threads": threads,
            "float32_ms": timing.rounded(statistics.median(ms["float32"])),
            "int8_ms": timing.rounded(statistics.median(ms["int8"])),
            "int8_over_float32": round(timing.ratio(ms["int8"], ms["float32"]), 3),
            "float_acc_pct": round(100 * check.float_accuracy, 2),
            "int8_acc_pct": round(100 * check.tflite_accuracy, 2),
            "drop_pts": round(check.drop_points, 2)})
    raw = {"params": int(model.count_params()), "train_seconds": round(train_s, 1),
           "export_seconds": round(export_s, 1), "eval_seconds": round(check.eval_seconds, 1),
           "latency_seconds": round(time.perf_counter() - start, 1),
           "float32_bytes": float32.size_bytes, "int8_bytes": check.export.size_bytes,
           "int8_float_ops": check.export.float_ops, "eval_images": check.count,
           "int8_agreement_with_float": round(check.agreement, 4), "latency": latency}
    return rows, raw


def run(quick=False):
    """Returns {"int8_latency": entry} with a table value (see the module docstring)."""
    settings = QUICK if quick else FULL
    data = datasets(settings)
    rows, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="tfkd_int8_bench_") as folder:
        for name in settings["models"]:
            print(f"int8_latency: {name}", flush=True)
            model_rows, raw[name] = measure_model(name, data, settings, folder)
            rows += model_rows
    note = (f"int8/float32 LiteRT latency at {IMAGE_SIZE}x{IMAGE_SIZE}, median of per-round "
            "ratios (< 1: int8 faster), and Keras float vs int8 TFLite test accuracy after "
            f"training for epochs={settings['epochs']} on {settings['train_images']} images; "
            "no target.")
    return {"int8_latency": timing.entry(rows, None, {"settings": {**settings,
                                                                    "threads": list(THREADS),
                                                                    "image_size": IMAGE_SIZE},
                                                       "models": raw}, note=note)}


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=1))
