"""feature_kd_step_overhead: a Distiller step with feature terms / the same step with logits only.

For three teacher -> student pairs at the recipes' sizes (teacher 28x28, student 32x32, batches
of 128 real Fashion-MNIST images): CNN -> CNN (convnet_m -> mobilenetv3_small), CNN -> ViT
(convnet_m -> deit_micro) and ViT -> ViT (vit_micro -> deit_micro), each with the terms
`tfkd.features.propose(teacher, student)` gives ("auto": the hint on the deepest stages, plus
attention transfer for CNN pairs or token relations for ViT pairs). Both Distillers share the
teacher and start from the same student weights; their compiled train steps are timed in
interleaved rounds, and the value is the worst pair's median per-round ratio. Target <= 1.3.

    python benchmarks/run.py --only feature_kd
"""

import keras

import kd_common
import timing
import tfkd

PAIRS = (("convnet_m", "mobilenetv3_small"), ("convnet_m", "deit_micro"),
         ("vit_micro", "deit_micro"))


def _distiller(teacher, student, terms):
    distiller = tfkd.Distiller(teacher=teacher, student=student, features=terms)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    return distiller


def _models(teacher_name, student_name):
    keras.utils.set_random_seed(0)
    teacher = tfkd.create_model(teacher_name, image_size=kd_common.TEACHER_SIZE, num_classes=10)
    student = tfkd.create_model(student_name, image_size=kd_common.STUDENT_SIZE, num_classes=10)
    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())
    return teacher, student, twin


def run(quick=False):
    count, rounds = (1, 2) if quick else (8, 7)
    pairs = PAIRS[:1] if quick else PAIRS
    x, y = kd_common.fashion_batch(batch_size=16 if quick else kd_common.BATCH)
    ratios, raw = {}, {}
    for teacher_name, student_name in pairs:
        teacher, student, twin = _models(teacher_name, student_name)
        terms = tfkd.features.propose(teacher, student)
        fns = {"logits": kd_common.steps(_distiller(teacher, twin, None), "train", (x, y), count),
               "features": kd_common.steps(_distiller(teacher, student, terms), "train", (x, y),
                                           count)}
        times = timing.interleaved(fns, rounds=rounds, warmup=2)
        pair = f"{teacher_name}->{student_name}"
        ratios[pair] = timing.ratio(times["features"], times["logits"])
        raw[pair] = {"ratio": ratios[pair], "terms": [t.get_config() for t in terms],
                     **{name: timing.summary(v) for name, v in times.items()}}
    raw["setup"] = {"teacher_size": kd_common.TEACHER_SIZE,
                    "student_size": kd_common.STUDENT_SIZE, "batch": len(x),
                    "steps_per_sample": count}
    return {"feature_kd_step_overhead": timing.entry(
        max(ratios.values()), 1.3, raw, note="Distiller step with the 'auto' feature terms / "
        "logit-only step, worst of the pairs; median of per-round ratios")}
