"""Architecture pairing: CNN and ViT teachers, each distilled into CNN and ViT students.

Command:

    python -m tfkd.recipes.arch_pairing [--teachers=convnet_m,vit_micro]
        [--students=mobilenetv3_small,mobilevit_xxs]

or from Python, writing the same study folder (each flag is a field of `Config`):

    from tfkd.recipes import arch_pairing
    arch_pairing.run(arch_pairing.Config(students=("mobilevit_xxs",)))

With no flags it trains two teachers at 32x32 on 30,000 Fashion-MNIST training images (a CNN,
`convnet_m`, and a ViT, `vit_micro`; up to 3 epochs with early stopping), then trains each
student (`mobilenetv3_small`, a CNN, and `mobilevit_xxs`, a ViT hybrid) at 32x32 on the first
5,000 images for 3 epochs, three ways: distilled from each teacher, and from scratch. Each run
is evaluated on the 10,000 test images; the distilled ones are exported to int8 and timed with
LiteRT. The table gives, per pair, the student's accuracy, its gain over scratch, the KD wall
time and the student's latency; the report (runs/arch_pairing/default/report.md) has the same
with plots.

Measured numbers live where they are regenerated from study folders, not here: the README's
"Study findings" (`python -m tfkd.report --readme README.md FOLDER...`) and each study's
report.md; the runtime with defaults is in the README's recipe table.
"""

import dataclasses
import functools

from tfkd.recipes import cli, engine, modes
from tfkd.recipes.config import (ConfigError, StudyConfig, check_models, check_sizes,
                                 check_weights, setting)

NAME = "arch_pairing"


@dataclasses.dataclass
class Config(StudyConfig):
    """The pairing's settings: `StudyConfig`'s, the teachers and the students."""

    teacher_size: int = 32
    teachers: tuple[str, ...] = setting(("convnet_m", "vit_micro"), "Teacher models "
                                        "(tfkd.list_models('cnn') and tfkd.list_models('vit')).")
    students: tuple[str, ...] = setting(("mobilenetv3_small", "mobilevit_xxs"),
                                        "Student models.")
    student_size: int = setting(32, "Student input side.")

    def teacher_names(self):
        """Every teacher of the pairing (`StudyConfig.check` checks them)."""
        return list(self.teachers)

    def check(self):
        super().check()
        check_models(*self.teachers, field="teachers")
        check_models(*self.students, field="students")
        check_weights(self.student_weights, self.students, "student_weights")
        if self.teacher_path:
            raise ConfigError(lambda n: f"{n('teacher_path')}: arch_pairing trains one teacher "
                              f"per architecture in {n('teachers')}; it takes no saved teacher")
        for student in self.students:
            check_sizes([self.student_size], student, "student_size")


def run(config=None):
    """Runs (or resumes) the study `config` describes (default `Config()`) into the folder the
    command line writes; returns its results rows. ConfigError first if a setting is bad."""
    return engine.run_recipe(NAME, config or Config(), plan, format_table,
                             teacher_names=list(config.teachers))


def plan(config):
    """Per seed and student: scratch, then KD from each teacher (tagged with its name); with
    --features the engine adds a kd+feat twin of each KD run."""
    runs = []
    for seed in config.seeds:
        for student in config.students:
            spec = functools.partial(engine.RunSpec, student=student,
                                     resolution=config.student_size, seed=seed,
                                     epochs=config.epochs)
            runs.append(spec(mode=modes.SCRATCH))
            runs += [spec(mode=modes.KD, tag=teacher) for teacher in config.teachers]
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
        teacher = r.get("teacher") or "(scratch)"
        if r["mode"] == modes.KD_FEAT:  # the feature-KD twin of a kd run (--features)
            teacher += "+feat"
        lines.append(f"{teacher:<14} {r['student']:<18} "
                     f"{r['test_accuracy']:>7.4f} {gain:>+8.2f} {r['train_seconds']:>7.1f} "
                     f"{local[0] if local else float('nan'):>7.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.main(run, Config)
