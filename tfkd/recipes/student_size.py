"""Student size at a fixed KD budget: several sizes of one student family, one teacher.

Command:

    python -m tfkd.recipes.student_size [--students=mobilevit_xxs,mobilevit_xs,mobilevit_s]
        [--budget_s=120]

With no flags it trains a `convnet_m` teacher at 32x32 on 30,000 Fashion-MNIST training images
(up to 3 epochs, early stopping), then distills three MobileViT students (xxs, xs, s: 1.0M,
1.9M, 5.0M parameters at 10 classes) at 32x32 on the first 5,000 images for 3 epochs each, and trains the
smallest from scratch as the baseline. With `--budget_s=S` every student instead gets S
seconds of training (a callback stops it mid-epoch when the time is up; the report's
`epochs_run` says how far each got). Each run is evaluated on the 10,000 test images; the
distilled ones are exported to int8 and timed. Report: runs/student_size/default/report.md (accuracy vs parameters).

Runtime on a 2-core CPU with defaults: 9 min 24 s (2026-11-22).

Numbers it gave (seed 0; teacher 0.9079):
(Measured before each run got datasets of its own; then a run's data order also depended on
the runs before it, so a rerun today gives different single-seed numbers.)

    student        params     MMACs  epochs  train_s  test acc
    mobilevit_xxs    958,346   4.29   3       58.9    0.7973
    mobilevit_xs   1,945,146  12.29   3       84.3    0.8181
    mobilevit_s    4,956,298  23.34   3       97.3    0.8391
    mobilevit_xxs from scratch                54.7    0.7687   (KD gain +2.86 points)
"""

import functools

from absl import app, flags

from tfkd.recipes import common, engine

flags.DEFINE_list("students", ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"],
                  "Student models, smallest first (one family).")
flags.DEFINE_integer("student_size", 32, "Student input side.")
flags.DEFINE_float("budget_s", 0.0, "Seconds of KD training per student (0: --epochs each, "
                   "then --epochs is the most any student gets).")
flags.DEFINE_bool("scratch", True, "Also train the smallest student from scratch.")
common.define_common_flags(teacher_size=32)
FLAGS = flags.FLAGS


def plan(cfg, seeds):
    """KD for every size at the same budget, plus the smallest from scratch."""
    if cfg.budget_s < 0:
        raise app.UsageError(f"--budget_s={cfg.budget_s}; pass seconds > 0, or 0 for a budget "
                             "of --epochs epochs")
    for student in cfg.students:
        common.parse_sizes([str(cfg.student_size)], student, "--student_size")
    runs = []
    for seed in seeds:
        spec = functools.partial(engine.RunSpec, resolution=cfg.student_size, seed=seed,
                                 epochs=cfg.epochs, budget_s=cfg.budget_s or None)
        runs += [spec(student=s, mode="kd") for s in cfg.students]
        if cfg.scratch:
            runs.append(spec(student=cfg.students[0], mode="scratch"))
    return runs


def format_table(rows):
    """Size against accuracy and the epochs the budget allowed."""
    header = f"{'run':<34} {'params':>10} {'MMACs':>7} {'epochs':>6} {'train_s':>8} {'acc':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['run_id']:<34} {r['params']:>10,} {r['macs'] / 1e6:>7.2f} "
                     f"{r['epochs_run']:>6} {r['train_seconds']:>8.1f} "
                     f"{r['test_accuracy']:>7.4f}")
    return "\n".join(lines)


def main(argv):
    del argv
    cfg = FLAGS
    common.check_counts(cfg, ("--students", cfg.students))
    common.check_models(cfg.teacher, *cfg.students)
    runs = plan(cfg, common.parse_ints(cfg.seeds, "--seeds", "0,1,2"))
    study, seeds = common.start("student_size", cfg)
    engine.run_study(study, cfg, seeds, runs, format_table)


if __name__ == "__main__":
    app.run(main)
