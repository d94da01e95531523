"""cached_kd_vs_student and cached_sweep_vs_uncached: what the teacher cache saves.

cached_kd_vs_student: one KD epoch trained from a `tfkd.TeacherCache` / one epoch of the same
student trained on the labels alone, same data (target <= 1.10: with the cache, KD costs about
what training the student costs). The same ratio without the cache (the teacher running every
step, as before the cache existed) is in `raw.uncached_kd_vs_student`.

cached_sweep_vs_uncached: a 4-run sweep (MobileNetV3-Small students at 32 and 40 pixels, two
seeds each, every run a fresh student trained for 3 epochs and validated every epoch, as the
recipes do) with the cache built inside the timed sweep / the same sweep running the teacher
on every step (target <= 0.5). The saving grows with the teacher's cost relative to the
student's: the sweep uses an EfficientNet-B0 teacher at 64 pixels (the study's teacher family,
at twice the student's resolution, the usual KD setting), whose forward pass costs about 1.6
MobileNetV3-Small training steps here. The demo's convnet_m teacher at 28 pixels costs about
a third of a step, so there the cache saves less (see the README's Performance section).

Every run also pays a fixed cost the cache cannot remove: Keras traces a fresh student's train
and test steps (about 6 s for MobileNetV3-Small on a 2-core CPU since tfkd builds the
optimizer before the first step; 11-12 s before). Short runs are dominated by it, so the
sweep's runs are sized as the recipes' defaults are (3 epochs over 5,000 images, validated on
the 10,000 test images); one round of each sweep takes about 6 minutes.

    python benchmarks/run.py --only cached_kd
"""

import os
import tempfile

import keras

import kd_common
import timing
import tfkd

SWEEP = [(32, 0), (32, 1), (40, 0), (40, 1)]  # (student resolution, seed)
SWEEP_TEACHER = ("efficientnet_b0", 64)


def run(quick=False):
    # The recipes' defaults: --limit=5000, the full 10,000-image test split, --epochs=3.
    limit, test_limit, epochs = (256, 256, 1) if quick else (5000, 10000, 3)
    rounds = 2 if quick else 5
    data = _data(limit, test_limit)
    epoch = _epoch_ratio(data, rounds)
    sweep, sweep_raw = _sweep_ratio(data, SWEEP_TEACHER, epochs)
    return {
        "cached_kd_vs_student": timing.entry(
            epoch[0], 1.10, epoch[1], note="KD epoch from the teacher cache / student-only "
            "epoch, same data; median of per-round ratios"),
        "cached_sweep_vs_uncached": timing.entry(
            sweep, 0.5, sweep_raw, note=f"4-run sweep, teacher {SWEEP_TEACHER[0]}@"
            f"{SWEEP_TEACHER[1]}: with the cache (built inside the timing) / without"),
    }


def _data(limit, test_limit):
    load = dict(image_size=28, batch_size=kd_common.BATCH)
    return {"train": tfkd.data.load("fashion_mnist", "train", limit=limit, seed=0, **load),
            "base": tfkd.data.load("fashion_mnist", "train", limit=limit, shuffle=False, **load),
            "test": tfkd.data.load("fashion_mnist", "test", limit=test_limit, **load),
            "limit": limit, "test_limit": test_limit}


def _epoch_ratio(data, rounds):
    teacher, student = kd_common.make_models()
    with tempfile.TemporaryDirectory() as folder:
        cache = tfkd.TeacherCache.build(teacher, data["base"], os.path.join(folder, "t.npz"),
                                        verbose=False)
    cached = cache.dataset(data["base"], batch_size=kd_common.BATCH, seed=0)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    # The same KD without the cache: the "before" number, measured alongside.
    uncached = tfkd.Distiller(teacher=teacher, student=keras.models.clone_model(student))
    uncached.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    alone = keras.models.clone_model(student)
    alone.compile(optimizer=keras.optimizers.Adam(1e-3), loss=kd_common.sparse_ce(),
                  metrics=["accuracy"])
    size = kd_common.STUDENT_SIZE
    plain = data["train"].map(lambda x, y: (tfkd.distiller.resize_images(x, (size, size)), y))
    fns = {"cached_kd_epoch": lambda: distiller.fit(cached, epochs=1, verbose=0),
           "uncached_kd_epoch": lambda: uncached.fit(data["train"], epochs=1, verbose=0),
           "student_epoch": lambda: alone.fit(plain, epochs=1, verbose=0)}
    times = timing.interleaved(fns, rounds=rounds, warmup=1)
    raw = {name: timing.summary(v) for name, v in times.items()}
    raw["uncached_kd_vs_student"] = timing.ratio(times["uncached_kd_epoch"],
                                                 times["student_epoch"])
    raw["setup"] = {"teacher": f"{kd_common.TEACHER}@{kd_common.TEACHER_SIZE}",
                    "student": f"{kd_common.STUDENT}@{size}", "examples": data["limit"],
                    "batch": kd_common.BATCH}
    return timing.ratio(times["cached_kd_epoch"], times["student_epoch"]), raw


def _sweep_ratio(data, teacher_spec, epochs):
    keras.utils.set_random_seed(0)
    teacher = tfkd.create_model(teacher_spec[0], image_size=teacher_spec[1], num_classes=10)
    fns = {"cached": lambda: _sweep(data, teacher, epochs, cached=True),
           "uncached": lambda: _sweep(data, teacher, epochs, cached=False)}
    # One round: a sweep takes minutes. Both sweeps build fresh students, so neither profits
    # from running second (no compiled function is shared).
    times = timing.interleaved(fns, rounds=1, warmup=0)
    raw = {name: timing.summary(v) for name, v in times.items()}
    raw["setup"] = {"teacher": f"{teacher_spec[0]}@{teacher_spec[1]}",
                    "runs": [f"{kd_common.STUDENT}@{r} seed {s}" for r, s in SWEEP],
                    "epochs_per_run": epochs, "train_examples": data["limit"],
                    "test_examples": data["test_limit"], "batch": kd_common.BATCH}
    return timing.ratio(times["cached"], times["uncached"]), raw


def _sweep(data, teacher, epochs, cached):
    """Trains every run of SWEEP as the recipes do: fresh student, fit with validation."""
    with tempfile.TemporaryDirectory() as folder:
        caches = None
        if cached:  # built inside the timing: a sweep pays for its cache
            caches = {split: tfkd.TeacherCache.build(
                teacher, data[key], os.path.join(folder, f"{split}.npz"), verbose=False)
                for split, key in (("train", "base"), ("test", "test"))}
        for resolution, seed in SWEEP:
            keras.utils.set_random_seed(seed)
            student = tfkd.create_model(kd_common.STUDENT, image_size=resolution,
                                        num_classes=10)
            distiller = tfkd.Distiller(teacher=teacher, student=student)
            distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
            train, test = data["train"], data["test"]
            if caches:
                train = caches["train"].dataset(data["base"], batch_size=kd_common.BATCH,
                                                seed=seed)
                test = caches["test"].dataset(test, batch_size=kd_common.BATCH, shuffle=False)
            distiller.fit(train, validation_data=test, epochs=epochs, verbose=0)
