"""kd_step_overhead: a tfkd Distiller train step / (student train step + teacher inference).

The floor of a KD step is the student's own training step plus the teacher's forward pass on the
same batch; anything above it is the Distiller's overhead (the in-step resize, the loss
combination, the agreement metric). The student's step gets its batch already resized to its
input size, so the Distiller's resize counts as overhead. Target <= 1.05. A ratio below 1 means
one graph overlaps teacher and student work that the floor runs one after the other.

    python benchmarks/run.py --only kd_step
"""

import keras

import kd_common
import timing
import tfkd


def run(quick=False):
    count, rounds = (2, 2) if quick else (10, 9)
    x, y = kd_common.fashion_batch()
    teacher, student = kd_common.make_models()
    x_student = kd_common.resized(x, kd_common.STUDENT_SIZE)

    distiller = tfkd_distiller(teacher, student)
    alone = keras.models.clone_model(student)
    alone.compile(optimizer=keras.optimizers.Adam(1e-3), loss=kd_common.sparse_ce(),
                  metrics=["accuracy"])
    fns = {"distiller": kd_common.steps(distiller, "train", (x, y), count),
           "student_train": kd_common.steps(alone, "train", (x_student, y), count),
           "teacher_inference": kd_common.steps(teacher, "predict", (x,), count)}
    times = timing.interleaved(fns, rounds=rounds, warmup=2)
    floor = [s + t for s, t in zip(times["student_train"], times["teacher_inference"])]
    raw = {name: timing.summary(v) for name, v in times.items()}
    raw["floor"] = timing.summary(floor)
    raw["setup"] = {"teacher": f"{kd_common.TEACHER}@{kd_common.TEACHER_SIZE}",
                    "student": f"{kd_common.STUDENT}@{kd_common.STUDENT_SIZE}",
                    "batch": kd_common.BATCH, "steps_per_sample": count}
    value = timing.ratio(times["distiller"], floor)
    return {"kd_step_overhead": timing.entry(
        value, 1.05, raw, note="tfkd Distiller step / (student step + teacher forward), "
        "same batch; median of per-round ratios")}


def tfkd_distiller(teacher, student):
    distiller = tfkd.Distiller(teacher=teacher, student=student, temperature=4.0,
                               student_loss_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    return distiller
