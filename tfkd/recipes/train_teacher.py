"""Train a teacher: any zoo model on the labels, with early stopping, saved as a .keras file.

Command:

    python -m tfkd.recipes.train_teacher [--teacher=efficientnet_b0 --teacher_size=64]

or from Python, writing the same study folder (each flag is a field of `Config`):

    from tfkd.recipes import train_teacher
    train_teacher.run(train_teacher.Config(teacher="efficientnet_b0", teacher_size=64))

With no flags it trains `convnet_m` at 28x28 on 30,000 Fashion-MNIST training images for up to
8 epochs, stopping when the accuracy on a held-out tenth of those images has not improved for
2 epochs (and keeping the best epoch's weights), then evaluates on the 10,000 test images.
It writes `runs/train_teacher/default/teachers/<hash>/teacher.keras` and `teacher.json`
(accuracy, epochs run, held-out accuracy per epoch); the hash keys every setting that shapes
the teacher, so the same command reuses the saved teacher instead of training again. A teacher
saved this way loads with `tfkd.models.load_model(path)`, and every other recipe distils from
it with `--teacher_path=PATH`.

A pretrained teacher: `--weights=imagenet` (keras.applications families, e.g.
`--teacher=efficientnet_b0`; `--weights=PATH` for the backbone file Keras downloads) or
`--teacher=hub:PRESET` (a keras-hub preset name or folder, with its own weights), on your images
with `--dataset=image_folder:PATH`. It first trains its new head alone for
`--teacher_warmup_epochs` (backbone frozen, BatchNorm in inference mode), then the whole model
at `--learning_rate` x `--teacher_finetune_lr_scale` with BatchNorm still frozen and early
stopping, for `--teacher_epochs` in all.

Measured numbers live where they are regenerated from study folders, not here: the README's
"Study findings" (`python -m tfkd.report --readme README.md FOLDER...`) and each study's
report.md; the runtime with defaults is in the README's recipe table.
"""

import dataclasses
import typing

from tfkd.recipes import cli, distributed, engine, inputs, teacher as teachers
from tfkd.recipes.config import StudyConfig

NAME = "train_teacher"


@dataclasses.dataclass
class Config(StudyConfig):
    """`StudyConfig` with the defaults of a teacher trained on its own: more epochs, no export."""

    FLAG_ALIASES: typing.ClassVar[dict] = {"weights": "teacher_weights"}

    teacher_epochs: int = 8
    quantization: str = "none"
    targets: tuple[str, ...] = ()


def run(config=None):
    """Trains (or reuses) the teacher `config` describes; returns its `teachers.Teacher`.

    Raises:
        ConfigError: a setting the teacher cannot be trained with.
    """
    config = config or Config()
    config.check()
    distributed.start_strategy(config)
    study = engine.open_study(NAME, config)
    data = inputs.load_data(config, config.seeds[0])
    teacher = teachers.get_teacher(study, config, data, seed=config.seeds[0])
    print(f"teacher {teacher.name}@{teacher.size}: test accuracy {teacher.accuracy:.4f}; "
          f"saved as {teacher.path}")
    return teacher


if __name__ == "__main__":
    cli.main(run, Config)
