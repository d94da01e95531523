"""Fine-tuning after KD: does a few epochs on the labels alone help a distilled student?

Command:

    python -m tfkd.recipes.finetune_after_kd [--kd_epochs=2 --ft_epochs=1]

or from Python, writing the same study folder (each flag is a field of `Config`):

    from tfkd.recipes import finetune_after_kd
    finetune_after_kd.run(finetune_after_kd.Config(kd_epochs=2, ft_epochs=1))

With no flags it trains a `convnet_m` teacher at 28x28 on 30,000 Fashion-MNIST training images
(up to 3 epochs, early stopping), then trains a `mobilenetv3_small` student at 32x32 on the
first 5,000 images four ways, all ending after the same N+M = 3 epochs except the first:
    kd-stage  KD for N = 2 epochs (the starting point of kd+ft);
    kd+ft     that student fine-tuned on the labels for M = 1 epoch (peak rate --ft_learning_rate);
    kd+qat    (with --qat) that student trained quantization-aware under the teacher for M;
    kd        KD for N+M epochs;
    scratch   labels only for N+M epochs.
Each run is evaluated on the 10,000 test images after every epoch; kd and kd+ft students are
exported to int8 and timed.
Report: runs/finetune_after_kd/default/report.md.

Measured numbers live where they are regenerated from study folders, not here: the README's
"Study findings" (`python -m tfkd.report --readme README.md FOLDER...`) and each study's
report.md; the runtime with defaults is in the README's recipe table.
"""

import dataclasses
import functools
import os

from tfkd.recipes import cli, distributed, engine, folder, modes
from tfkd.recipes.config import (ConfigError, StudyConfig, check_models, check_sizes,
                                 check_weights, setting)

NAME = "finetune_after_kd"


@dataclasses.dataclass
class Config(StudyConfig):
    """The fine-tuning study's settings: `StudyConfig`'s, the student and its two stages."""

    student: str = setting("mobilenetv3_small", "Student model (tfkd.list_models()).")
    student_size: int = setting(32, "Student input side.")
    kd_epochs: int = setting(2, "N: KD epochs before fine-tuning.")
    ft_epochs: int = setting(1, "M: fine-tuning epochs on the labels after KD.")
    ft_learning_rate: float = setting(5e-4, "Peak learning rate of the fine-tuning stage.")
    qat: bool = setting(False, "Also a kd+qat run: the kd-stage student trained "
                        "quantization-aware (tfkd.qat) under the teacher for M epochs at "
                        "--ft_learning_rate, its int8 export using the learned ranges.")

    def check(self):
        super().check()
        check_models(self.student)
        check_weights(self.student_weights, [self.student], "student_weights")
        if self.kd_epochs < 1 or self.ft_epochs < 1:
            raise ConfigError(lambda n: f"{n('kd_epochs')}={self.kd_epochs} "
                              f"{n('ft_epochs')}={self.ft_epochs}: both must be at least 1")
        check_sizes([self.student_size], self.student, "student_size")


def run(config=None):
    """Runs (or resumes) the study `config` describes (default `Config()`) into the folder the
    command line writes; returns its results rows. ConfigError first if a setting is bad."""
    return engine.run_recipe(NAME, config or Config(), plan, format_table)


def plan(config):
    """The four runs per seed; kd+ft starts from the kd-stage run's saved student."""
    study_dir = folder.study_dir(distributed.output_root(config), NAME, config.name)
    total = config.kd_epochs + config.ft_epochs
    runs = []
    for seed in config.seeds:
        spec = functools.partial(engine.RunSpec, student=config.student,
                                 resolution=config.student_size, seed=seed)
        stage = spec(mode=modes.KD_STAGE, epochs=config.kd_epochs)
        start = os.path.join(study_dir, folder.RUNS, stage.run_id, folder.STUDENT)
        runs += [stage,
                 spec(mode=modes.KD_FT, epochs=config.ft_epochs, init_from=start,
                      learning_rate=config.ft_learning_rate)]
        if config.qat:
            runs.append(spec(mode=modes.KD_QAT, epochs=config.ft_epochs, init_from=start,
                             learning_rate=config.ft_learning_rate))
        runs += [spec(mode=modes.KD, epochs=total), spec(mode=modes.SCRATCH, epochs=total)]
    return runs


def format_table(rows):
    """Each mode's accuracy and total epochs."""
    header = f"{'run':<36} {'epochs':>6} {'acc':>7} {'best':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['run_id']:<36} {r['epochs']:>6} {r['test_accuracy']:>7.4f} "
                     f"{r['best_accuracy']:>7.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.main(run, Config)
