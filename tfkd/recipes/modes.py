"""The run modes: how a run trains, and what the engine and the report do with it.

One table read by the engine (how to train, whether to export), the report (which runs are
compared with scratch, in what order) and the recipes (which modes they plan). A new mode, such
as kd+qat or feature KD, is one entry here plus its training in the engine.
"""

import dataclasses

SCRATCH, KD, KD_STAGE, KD_FT, KD_QAT = "scratch", "kd", "kd-stage", "kd+ft", "kd+qat"
KD_FEAT = "kd+feat"


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way of training a student.

    Attributes:
        name: the word in run ids, metrics.json and the report.
        description: one line for docs and the report.
        distills: trained by a `tfkd.Distiller` (else on the labels alone).
        teacher: the run learns from a teacher, directly or through a distilled start, and
            records it.
        shipped: the study's answer: exported, checked and timed, and compared with scratch in
            the report. Baselines and intermediate stages are not (an export and a 10,000-image
            check cost ~20 s on a CPU).
        quantization_aware: the student trains with fake quantization (`tfkd.qat`), so its
            int8 export uses the ranges it learned.
        features: the Distiller adds the study's feature terms (`--features`) to the logit
            loss.
    """

    name: str
    description: str
    distills: bool
    teacher: bool
    shipped: bool
    quantization_aware: bool = False
    features: bool = False


_TABLE = (
    Mode(SCRATCH, "trained on the labels alone (the baseline KD must beat)",
         distills=False, teacher=False, shipped=False),
    Mode(KD, "distilled from the teacher", distills=True, teacher=True, shipped=True),
    Mode(KD_FEAT, "distilled from the teacher's logits and features (--features)",
         distills=True, teacher=True, shipped=True, features=True),
    Mode(KD_FT, "a kd-stage student fine-tuned on the labels", distills=False, teacher=True,
         shipped=True),
    Mode(KD_STAGE, "distilled, as the first stage of a kd+ft or kd+qat run", distills=True,
         teacher=True, shipped=False),
    Mode(KD_QAT, "a kd-stage student trained quantization-aware, still distilled",
         distills=True, teacher=True, shipped=True, quantization_aware=True),
)
MODES = {mode.name: mode for mode in _TABLE}
# The final distilled students, compared with scratch (the report's "KD gain").
SHIPPED = tuple(m.name for m in _TABLE if m.shipped)


def get(name):
    """The `Mode` called `name`; ValueError naming the modes otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown run mode {name!r}; choose one of {list(MODES)}") from None


def order(name):
    """Sort key of a mode in tables: the table's order, unknown modes last."""
    names = list(MODES)
    return names.index(name) if name in MODES else len(names)
