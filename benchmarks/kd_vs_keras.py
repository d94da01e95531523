"""kd_vs_keras: a tfkd Distiller train step / a `keras.distillation.Distiller` train step.

Same teacher, same student, same batch, same optimizer. Keras's Distiller needs teacher and
student inputs of one shape, so both take 32x32 here (convnet_m teacher, MobileNetV3-Small
student) and neither resizes. It is configured for Hinton KD as tfkd's default is:
`LogitsDistillation(temperature=4, loss=keras.losses.KLDivergence())` (the default string loss
skips the softmax, see DESIGN.md) and a student loss weight of 0.5. Target <= 1.0.

    python benchmarks/run.py --only kd_vs_keras
"""

import keras

import kd_common
import timing
import tfkd

SIZE = 32


def run(quick=False):
    count, rounds = (2, 2) if quick else (10, 9)
    x, y = kd_common.fashion_batch()
    x = kd_common.resized(x, SIZE)
    teacher, student = kd_common.make_models(teacher_size=SIZE, student_size=SIZE)
    ours = tfkd.Distiller(teacher=teacher, student=student, temperature=4.0,
                          student_loss_weight=0.5)
    ours.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    theirs = keras.distillation.Distiller(
        teacher=teacher, student=keras.models.clone_model(student),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=4.0, loss=keras.losses.KLDivergence()),
        student_loss_weight=0.5)
    theirs.compile(optimizer=keras.optimizers.Adam(1e-3), loss=kd_common.sparse_ce(),
                   metrics=["accuracy"])
    fns = {"tfkd": kd_common.steps(ours, "train", (x, y), count),
           "keras": kd_common.steps(theirs, "train", (x, y), count)}
    times = timing.interleaved(fns, rounds=rounds, warmup=2)
    raw = {name: timing.summary(v) for name, v in times.items()}
    raw["setup"] = {"teacher": f"{kd_common.TEACHER}@{SIZE}",
                    "student": f"{kd_common.STUDENT}@{SIZE}", "batch": kd_common.BATCH,
                    "steps_per_sample": count}
    return {"kd_vs_keras": timing.entry(
        timing.ratio(times["tfkd"], times["keras"]), 1.0, raw,
        note="tfkd.Distiller step / keras.distillation.Distiller step, same models and batch")}
