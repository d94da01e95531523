"""`input_pipeline_ratio`: can the recipes' tf.data pipeline feed the training step?

    python benchmarks/run.py --only input_pipeline   # ~40 s on a 2-core CPU

The pipelines are what the recipes train on (`tfkd.recipes.inputs.load_data`): Fashion-MNIST
at 28 px, batches of 128, 5,000 shuffled images; and the same split with cached teacher logits
(`tfkd.TeacherCache.dataset`, full and top-3). It is timed an epoch at a time, alone, in
images/s. The training steps are compiled `train_step`s on one batch already in memory, so
they contain no input work: the recipes' default KD (teacher `convnet_m` at 28, student
`mobilenetv3_small` at 32, `tfkd.Distiller`) and the same student trained alone on labels
(scratch, fed batches resized to 32 as the recipes do). Pipelines and steps are interleaved
round by round.

The headline is the slowest pipeline's images/s over the fastest step's images/s, the median
of per-round ratios; target >= 3, so input work stays a small share of the 2 CPU cores that
the step itself also uses. Every pipeline/step pair's ratio is in `raw`.
"""

import os
import statistics
import tempfile

import keras

import kd_common
import timing
import tfkd
from kd_common import BATCH as BATCH_SIZE, STUDENT, STUDENT_SIZE, TEACHER, TEACHER_SIZE
from tfkd.recipes import inputs

TARGET = 3.0
DATA_SIZE = 28  # the recipes' --data_size
# (pipeline limit, train steps per timed call, rounds); a timed step call takes ~1 s here.
FULL = {"limit": 5000, "steps_per_call": 8, "rounds": 7}
QUICK = {"limit": 512, "steps_per_call": 1, "rounds": 2}


def dataset_factories(limit):
    """The pipelines to time: name -> zero-argument function building the dataset.

    Add a pipeline here to have it timed against the steps (the headline takes the slowest);
    its first element must be the image batch (images are counted from it). The teacher-cache
    pipelines (`(images, labels, teacher_logits)` batches, full logits and top-3 expanded in
    the pipeline) are what the recipes' KD runs train on with --teacher_cache=auto.
    """
    def recipe():
        return recipe_dataset(limit)

    def recipe_resized():
        # Scratch runs resize in the pipeline rather than in the step (recipes/engine.py).
        return inputs.resized(recipe_dataset(limit), STUDENT_SIZE)

    def cached(top_k):
        def build():
            # The recipes' cached KD batches: (images, labels, teacher_logits), shuffled.
            base = tfkd.data.load("fashion_mnist", "train", image_size=DATA_SIZE,
                                  batch_size=BATCH_SIZE, limit=limit, shuffle=False)
            teacher = tfkd.create_model(TEACHER, image_size=TEACHER_SIZE, num_classes=10)
            with tempfile.TemporaryDirectory() as folder:
                cache = tfkd.TeacherCache.build(teacher, base, os.path.join(folder, "t.npz"),
                                                top_k=top_k, verbose=False)
            return cache.dataset(base, batch_size=BATCH_SIZE, seed=0)
        return build

    return {"recipe_28px": recipe, f"recipe_resized_{STUDENT_SIZE}px": recipe_resized,
            "teacher_cache_full": cached(None), "teacher_cache_top3": cached(3)}


def recipe_dataset(limit):
    """The training split as `tfkd.recipes.inputs.load_data` loads it with the defaults."""
    return tfkd.data.load("fashion_mnist", "train", image_size=DATA_SIZE,
                          batch_size=BATCH_SIZE, limit=limit, seed=0)


def epoch_fns(factories):
    """Builds each dataset once; returns (name -> callable iterating one epoch, name -> images).

    The callables start a fresh iterator each call, as every training epoch does, so the
    shuffle-buffer fill counts too. The image count per epoch is read by iterating once.
    """
    fns, images = {}, {}
    for name, factory in factories.items():
        dataset = factory()
        fns[name] = _epoch(dataset)
        images[name] = fns[name]()
    return fns, images


def _epoch(dataset):
    def run_epoch():
        count = 0
        for batch in dataset:
            count += int(batch[0].shape[0])
        return count
    return run_epoch


def step_fns(batch, steps_per_call):
    """name -> callable running `steps_per_call` compiled train steps on one in-memory batch.

    Models have random weights: a step costs the same whatever the weights are.
    """
    images, labels = (b.numpy() for b in batch)
    teacher, student = kd_common.make_models(TEACHER_SIZE, STUDENT_SIZE)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=_optimizer(), metrics=["accuracy"])
    scratch = keras.models.clone_model(student)
    scratch.compile(optimizer=_optimizer(), loss=kd_common.sparse_ce(), metrics=["accuracy"])
    resized = kd_common.resized(images, STUDENT_SIZE)
    return {"kd_step": kd_common.steps(distiller, "train", (images, labels), steps_per_call),
            "scratch_step": kd_common.steps(scratch, "train", (resized, labels), steps_per_call)}


def _optimizer():
    # As the recipes build it (training.adam); the schedule's length does not change a step.
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, 1000))


def measure(factories, settings):
    """Times the pipelines and the steps interleaved; returns the results entry."""
    pipelines, epoch_images = epoch_fns(factories)
    steps = step_fns(next(iter(recipe_dataset(settings["limit"]))), settings["steps_per_call"])
    step_images = dict.fromkeys(steps, BATCH_SIZE * settings["steps_per_call"])
    seconds = timing.interleaved({**pipelines, **steps}, rounds=settings["rounds"], warmup=1)
    rates = {name: [n / s for s in seconds[name]]
             for name, n in {**epoch_images, **step_images}.items()}
    slowest = min(pipelines, key=lambda n: statistics.median(rates[n]))
    fastest = max(steps, key=lambda n: statistics.median(rates[n]))
    value = timing.ratio(rates[slowest], rates[fastest])
    raw = {"settings": {**settings, "batch_size": BATCH_SIZE, "data_size": DATA_SIZE,
                        "teacher": f"{TEACHER}@{TEACHER_SIZE}",
                        "student": f"{STUDENT}@{STUDENT_SIZE}"},
           "headline": {"pipeline": slowest, "step": fastest},
           "pipelines": {n: _rate_summary(seconds[n], epoch_images[n]) for n in pipelines},
           "steps": {n: _rate_summary(seconds[n], step_images[n]) for n in steps},
           "ratios": {f"{p}/{s}": timing.ratio(rates[p], rates[s])
                      for p in pipelines for s in steps}}
    note = (f"images/s of the slowest recipe pipeline ({slowest}) over the fastest training "
            f"step measured ({fastest}; steps: KD {TEACHER}@{TEACHER_SIZE} -> "
            f"{STUDENT}@{STUDENT_SIZE}, and {STUDENT}@{STUDENT_SIZE} alone), each timed alone, "
            "the steps on a batch in memory, through Keras's compiled train function.")
    return timing.entry(value, TARGET, raw, better="higher", note=note)


def _rate_summary(seconds, images_per_call):
    rates = [images_per_call / s for s in seconds]
    return {"images_per_call": images_per_call,
            "images_per_s_median": timing.rounded(statistics.median(rates)),
            **timing.summary(seconds)}


def run(quick=False):
    """Returns {"input_pipeline_ratio": entry}."""
    settings = QUICK if quick else FULL
    return {"input_pipeline_ratio": measure(dataset_factories(settings["limit"]), settings)}


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=1))
