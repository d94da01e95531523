"""Student size at a fixed KD budget: several sizes of one student family, one teacher.

Command:

    python -m tfkd.recipes.student_size [--students=mobilevit_xxs,mobilevit_xs,mobilevit_s]
        [--budget_s=120]

or from Python, writing the same study folder (each flag is a field of `Config`):

    from tfkd.recipes import student_size
    student_size.run(student_size.Config(budget_s=120))

With no flags it trains a `convnet_m` teacher at 32x32 on 30,000 Fashion-MNIST training images
(up to 3 epochs, early stopping), then distills three MobileViT students (xxs, xs, s: 1.0M,
1.9M, 5.0M parameters at 10 classes) at 32x32 on the first 5,000 images for 3 epochs each, and trains the
smallest from scratch as the baseline. With `--budget_s=S` every student instead gets S
seconds of training (a callback stops it mid-epoch when the time is up; the report's
`epochs_run` says how far each got). Each run is evaluated on the 10,000 test images; the
distilled ones are exported to int8 and timed. Report: runs/student_size/default/report.md (accuracy vs parameters).

Measured numbers live where they are regenerated from study folders, not here: the README's
"Study findings" (`python -m tfkd.report --readme README.md FOLDER...`) and each study's
report.md; the runtime with defaults is in the README's recipe table.
"""

import dataclasses
import functools

from tfkd.recipes import cli, engine, modes
from tfkd.recipes.config import (ConfigError, StudyConfig, check_models, check_sizes,
                                 check_weights, setting)

NAME = "student_size"


@dataclasses.dataclass
class Config(StudyConfig):
    """The size study's settings: `StudyConfig`'s, the students and their budget."""

    teacher_size: int = 32
    students: tuple[str, ...] = setting(("mobilevit_xxs", "mobilevit_xs", "mobilevit_s"),
                                        "Student models, smallest first (one family).")
    student_size: int = setting(32, "Student input side.")
    budget_s: float = setting(0.0, "Seconds of KD training per student (0: --epochs each, "
                              "then --epochs is the most any student gets).")
    scratch: bool = setting(True, "Also train the smallest student from scratch.")

    def check(self):
        super().check()
        check_models(*self.students, field="students")
        check_weights(self.student_weights, self.students, "student_weights")
        if self.budget_s < 0:
            raise ConfigError(lambda n: f"{n('budget_s')}={self.budget_s}; pass seconds > 0, or "
                              f"0 for a budget of {n('epochs')} epochs")
        for student in self.students:
            check_sizes([self.student_size], student, "student_size")


def run(config=None):
    """Runs (or resumes) the study `config` describes (default `Config()`) into the folder the
    command line writes; returns its results rows. ConfigError first if a setting is bad."""
    return engine.run_recipe(NAME, config or Config(), plan, format_table)


def plan(config):
    """KD for every size at the same budget, plus the smallest from scratch."""
    runs = []
    for seed in config.seeds:
        spec = functools.partial(engine.RunSpec, resolution=config.student_size, seed=seed,
                                 epochs=config.epochs, budget_s=config.budget_s or None)
        runs += [spec(student=s, mode=modes.KD) for s in config.students]
        if config.scratch:
            runs.append(spec(student=config.students[0], mode=modes.SCRATCH))
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


if __name__ == "__main__":
    cli.main(run, Config)
