"""Resolution sweep: one teacher, one student architecture at several input sizes, KD vs scratch.

Command (the main job; `make demo` runs it with these defaults):

    python -m tfkd.recipes.resolution_sweep [--resolutions=32,40,48] [--student=...]

or from Python, writing the same study folder (each flag is a field of `Config`):

    from tfkd.recipes import resolution_sweep
    resolution_sweep.run(resolution_sweep.Config(resolutions=(32, 48)))

With no flags it trains a `convnet_m` teacher at 28x28 on 30,000 Fashion-MNIST training images
(up to 3 epochs, early stopping on a held-out tenth), then trains a `mobilenetv3_small` student
at 32, 40 and 48 pixels on the first 5,000 images, twice: distilled from the teacher and from
scratch on the labels (3 epochs each; each batch is resized to the student's side). A teacher
that learned from more data than the students is the setting KD is for. Every student is
evaluated on the 10,000 test images after each epoch; each distilled one is exported to int8
TFLite (checked against the float model) and timed with LiteRT at 1 and 2 threads. It writes
`runs/resolution_sweep/default/` (see tfkd.recipes.folder) and the report (tfkd.report):
results.csv, report.md, plots/. Columns: accuracy (last and best epoch), training peak memory
(process RSS), MACs per image, int8 TFLite size, accuracy and drop, latency.

Measured numbers live where they are regenerated from study folders, not here: the README's
"Study findings" (`python -m tfkd.report --readme README.md FOLDER...`) and each study's
report.md; the runtime with defaults is in the README's recipe table.
"""

import dataclasses

from tfkd.recipes import cli, engine, modes
from tfkd.recipes.config import StudyConfig, check_models, check_sizes, check_weights, setting

NAME = "resolution_sweep"


@dataclasses.dataclass
class Config(StudyConfig):
    """The sweep's settings: `StudyConfig`'s and the student and its sides."""

    student: str = setting("mobilenetv3_small", "Student model (tfkd.list_models()).")
    resolutions: tuple[int, ...] = setting((32, 40, 48), "Student input sides to sweep.")
    scratch: bool = setting(True, "Also train each student from scratch (the baseline the "
                            "report's KD gain is measured against).")

    def check(self):
        super().check()
        check_models(self.student)
        check_weights(self.student_weights, [self.student], "student_weights")
        check_sizes(self.resolutions, self.student, "resolutions")


def run(config=None):
    """Runs (or resumes) the study `config` describes (default `Config()`) into the folder the
    command line writes; returns its results rows. ConfigError first if a setting is bad."""
    return engine.run_recipe(NAME, config or Config(), plan, format_table)


def plan(config):
    """The runs of this sweep, in the order they run."""
    kinds = [modes.KD, modes.SCRATCH] if config.scratch else [modes.KD]
    return [engine.RunSpec(student=config.student, resolution=size, mode=mode, seed=seed,
                           epochs=config.epochs)
            for seed in config.seeds for size in config.resolutions for mode in kinds]


def format_table(rows):
    """The runs as an aligned text table."""
    header = (f"{'run':<34} {'params':>10} {'MMACs':>7} {'acc':>7} {'best':>7} {'epoch_s':>8} "
              f"{'rss_MB':>7} {'tflite_kB':>9} {'q_acc':>7} {'drop':>6} {'ms@1':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        q = next(iter(r.get("tflite", {}).values()), {})
        local = [b for b in r.get("bench", []) if b["target"] == "local" and b["threads"] == 1]
        lines.append(
            f"{r['run_id']:<34} {r['params']:>10,} {r['macs'] / 1e6:>7.2f} "
            f"{r['test_accuracy']:>7.4f} {r['best_accuracy']:>7.4f} {r['epoch_seconds']:>8.1f} "
            f"{r['peak_rss_mb']:>7.0f} {_kb(q.get('bytes')):>9} {_num(q.get('accuracy')):>7} "
            f"{_num(q.get('drop_points'), 2):>6} "
            f"{_num(local[0]['median_ms'] if local else None, 3):>6}")
    return "\n".join(lines)


def _kb(value):
    return f"{value / 1e3:.1f}" if value else "-"


def _num(value, digits=4):
    return f"{value:.{digits}f}" if value is not None else "-"


if __name__ == "__main__":
    cli.main(run, Config)
