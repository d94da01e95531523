"""Architecture pairing: CNN and ViT teachers, each distilled into CNN and ViT students.

Command:

    python -m tfkd.recipes.arch_pairing [--teachers=convnet_m,vit_micro]
        [--students=mobilenetv3_small,mobilevit_xxs]

With no flags it trains two teachers at 32x32 on 10,000 Fashion-MNIST training images (a CNN,
`convnet_m`, and a ViT, `vit_micro`; up to 3 epochs with early stopping), then trains each
student (`mobilenetv3_small`, a CNN, and `mobilevit_xxs`, a ViT hybrid) at 32x32 for 3 epochs
three ways: distilled from each teacher, and from scratch. Each run is evaluated on the 10,000
test images, exported to int8 and timed with LiteRT. The table gives, per pair, the student's
accuracy, its gain over scratch, the KD wall time and the student's latency; the report
(runs/arch_pairing/default/report.md) has the same with plots.

Runtime on a 2-core CPU with defaults: RUNTIME below.
"""

import functools

from absl import app, flags

from tfkd import report
from tfkd.recipes import common, engine

RUNTIME = "not yet measured"

flags.DEFINE_list("teachers", ["convnet_m", "vit_micro"], "Teacher models (tfkd.list_models("
                  "'cnn') and tfkd.list_models('vit')).")
flags.DEFINE_list("students", ["mobilenetv3_small", "mobilevit_xxs"], "Student models.")
flags.DEFINE_integer("student_size", 32, "Student input side.")
common.define_common_flags(teacher_size=32)
FLAGS = flags.FLAGS


def plan(cfg, seeds):
    """Per seed and student: scratch, then KD from each teacher (tagged with its name)."""
    runs = []
    for seed in seeds:
        for student in cfg.students:
            common.parse_sizes([str(cfg.student_size)], student, "--student_size")
            spec = functools.partial(engine.RunSpec, student=student,
                                     resolution=cfg.student_size, seed=seed, epochs=cfg.epochs)
            runs.append(spec(mode="scratch"))
            runs += [spec(mode="kd", tag=teacher) for teacher in cfg.teachers]
    return runs


def format_table(rows):
    """Teacher x student: accuracy, gain over scratch (points), KD seconds, latency."""
    scratch = {r["student"]: r["test_accuracy"] for r in rows if r["mode"] == "scratch"}
    header = (f"{'teacher':<14} {'student':<18} {'acc':>7} {'gain_pts':>8} {'kd_s':>7} "
              f"{'ms@1':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        local = [b["median_ms"] for b in r.get("bench", [])
                 if b["target"] == "local" and b["threads"] == 1]
        gain = 100 * (r["test_accuracy"] - scratch.get(r["student"], r["test_accuracy"]))
        lines.append(f"{r.get('teacher') or '(scratch)':<14} {r['student']:<18} "
                     f"{r['test_accuracy']:>7.4f} {gain:>+8.2f} {r['train_seconds']:>7.1f} "
                     f"{local[0] if local else float('nan'):>7.3f}")
    return "\n".join(lines)


def main(argv):
    del argv
    cfg = FLAGS
    common.check_models(*cfg.teachers, *cfg.students)
    for teacher in cfg.teachers:
        common.parse_sizes([str(cfg.teacher_size)], teacher, "--teacher_size")
    runs = plan(cfg, common.parse_ints(cfg.seeds, "--seeds", "0,1,2"))
    study, seeds = common.start("arch_pairing", cfg)
    data_for = functools.lru_cache()(lambda seed: common.load_data(cfg, seed))
    teachers = {name: common.get_teacher(study, cfg, data_for(seeds[0]), name=name,
                                         seed=seeds[0]) for name in cfg.teachers}
    rows = engine.run_all(study, runs, cfg, data_for, lambda spec: teachers[spec.tag])
    for teacher in teachers.values():
        print(f"teacher {teacher.name} ({teacher.kind}): test accuracy {teacher.accuracy:.4f}")
    print(format_table(rows))
    print(f"report: {report.build(study.dir)['report_md']}")


if __name__ == "__main__":
    app.run(main)
