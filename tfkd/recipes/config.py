"""A study's settings as one typed object: what the engine, data, teacher and export read.

    config = tfkd.recipes.resolution_sweep.Config(resolutions=(32, 48), seeds=(0, 1))
    rows = tfkd.recipes.resolution_sweep.run(config)

`StudyConfig` holds the settings every recipe shares; each recipe subclasses it with its own
fields (and its own defaults, by declaring a field again). The command line builds the same
object from absl flags (`tfkd.recipes.cli`): every field is a flag of the same name, its help
text is the field's `help` metadata, and a study folder's config.json records the fields in the
flags' spelling, so a study started from Python resumes from the command line and back.
"""

import dataclasses
import os
import typing

import tfkd

# Settings that change how a study is shown or executed, not what it computes: they may differ
# between runs, and between the shards of one study (--shard_index) on different machines.
# How a device is reached (--bench_options: keys, ssh config files) is one of them too.
PRESENTATION = ("verbose", "output_dir", "name", "strategy", "shard_index", "num_shards",
                "bench_options")
# --bench_options that go to benchmark_model, the tool adb targets run.
TOOL_OPTIONS = ("benchmark_binary",)
# --bench_options keys given more than once collect into a tuple; paths get ~ expanded.
REPEATED_OPTIONS = ("ssh_options",)
PATH_OPTIONS = ("config_file", "identity_file", "adb", "benchmark_binary")


class ConfigError(ValueError):
    """A setting a study cannot run with.

    The message names settings as Python fields (`epochs=0`); `as_flags()` renders the same
    message with command-line flags (`--epochs=0`), which is what the recipes' mains print.
    """

    def __init__(self, render):
        self._render = render
        super().__init__(render(lambda name: name))

    def as_flags(self):
        """The message with each setting spelled as its flag."""
        return self._render(lambda name: f"--{name}")


def setting(default, help, *, choices=None):  # noqa: A002 - the word absl and argparse use
    """A config field with the help text of its flag (and its allowed values, if a few)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def show(values):
    """A list setting as the command line writes it: `32,40,48`."""
    if isinstance(values, (list, tuple)):
        return ",".join(str(v) for v in values)
    return str(values)


@dataclasses.dataclass
class StudyConfig:
    """The settings every recipe shares. See each field's help (or `--helpfull`)."""

    dataset: str = setting("fashion_mnist", "Dataset: fashion_mnist, image_folder:PATH or "
                           "tfds:NAME.")
    data_size: int = setting(28, "Side the dataset is loaded at; each model gets the batches "
                             "resized to its own input side.")
    teacher: str = setting("convnet_m", "Teacher model (tfkd.list_models()).")
    teacher_size: int = setting(28, "Teacher input side.")
    teacher_epochs: int = setting(3, "Most epochs to train the teacher for (early stopping may "
                                  "end sooner).")
    teacher_patience: int = setting(2, "Early stopping: epochs without a better held-out "
                                    "accuracy before the teacher stops.")
    teacher_weights: str = setting("", "Starting weights of the teacher the study trains: empty "
                                   "(random; a hub:PRESET teacher starts from its preset), "
                                   "imagenet (keras.applications families), or the path of a "
                                   "backbone .h5 or .weights.h5 file. A pretrained teacher "
                                   "first trains its new head alone (--teacher_warmup_epochs), "
                                   "then the whole model at a lower learning rate.")
    teacher_warmup_epochs: int = setting(1, "Pretrained teachers: epochs that train the new "
                                         "head alone, the backbone frozen (its BatchNorm in "
                                         "inference mode), before fine-tuning the whole model.")
    teacher_finetune_lr_scale: float = setting(0.1, "Pretrained teachers: the whole model "
                                               "fine-tunes at learning_rate times this, with "
                                               "BatchNorm kept in inference mode.")
    teacher_path: str = setting("", "A teacher trained elsewhere (.keras, e.g. train_teacher's "
                                "teacher.keras): the study distils from it instead of training "
                                "--teacher (--teacher and --teacher_size are then unused).")
    student_weights: str = setting("", "Starting weights of every student: empty (random) or "
                                   "imagenet (keras.applications families).")
    epochs: int = setting(3, "Training epochs per student run.")
    batch_size: int = setting(128, "Global batch size: with several replicas (--strategy) each "
                              "gets batch_size / replicas per step.")
    learning_rate: float = setting(2e-3, "Peak Adam learning rate (cosine decay to zero over "
                                   "each run).")
    limit: int = setting(5000, "Training examples used (the first N of the split); 0: all.")
    teacher_limit: int = setting(30000, "Training examples the teacher learns from (the first "
                                 "N); 0: the same as --limit. A teacher that saw more data than "
                                 "the students is the usual KD setting.")
    test_limit: int = setting(0, "Test examples used; 0: all.")
    seeds: tuple[int, ...] = setting((0,), "Seeds; every run is repeated once per seed and the "
                                     "report gives mean and std over them.")
    temperature: float = setting(4.0, "KD temperature.")
    student_loss_weight: float = setting(0.5, "Weight of the hard-label loss in KD (the rest "
                                         "goes to distillation).")
    distillation_loss: str = setting("kl", "Logit distillation loss (tfkd.LOSSES): kl (Hinton), "
                                     "hard (DeiT), dkd (decoupled KD) or dist (DIST).",
                                     choices=tuple(tfkd.LOSSES))
    features: str = setting("none", "Feature distillation: with a value other than none, every "
                            "kd run gets a kd+feat twin that adds these feature terms to the "
                            "logit loss, so the study compares the two. auto (a preset per "
                            "teacher/student family pair), hint, attention, relation or rkd "
                            "(tfkd.features.PRESETS), or terms TEACHER_LAYER:STUDENT_LAYER"
                            "[:LOSS[:WEIGHT]] separated by commas.")
    recalibrate_bn_batches: int = setting(0, "After each student run, recompute its "
                                          "BatchNorm statistics on this many training batches "
                                          "(tfkd.models.recalibrate_batch_norm) before it is "
                                          "evaluated, saved and exported: short runs otherwise "
                                          "score their lagging statistics. 0: off.")
    output_dir: str = setting("runs", "Root folder: the study goes to "
                              "OUTPUT_DIR/<recipe>/<name>/.")
    name: str = setting("default", "Study name. The same command with the same name resumes "
                        "it, skipping finished runs.")
    targets: tuple[str, ...] = setting(("local",), "Where to time each exported student: "
                                       "local, adb, adb:SERIAL or ssh:user@host[:port]; empty: "
                                       "no latency.")
    bench_threads: tuple[int, ...] = setting((1, 2), "CPU thread counts for latency.")
    bench_options: tuple[str, ...] = setting((), "How to reach the targets, as KEY=VALUE items "
                                             "separated by commas (tfkd.bench.run's options): "
                                             "ssh targets: config_file, identity_file, "
                                             "ssh_options (Key=Value, repeatable), "
                                             "connect_timeout_s, python (the board's "
                                             "interpreter); adb targets: adb, taskset, "
                                             "benchmark_binary (else the official prebuilt).")
    delegates: tuple[str, ...] = setting(("xnnpack",), "Delegates to time each exported "
                                         "student with, on every target: xnnpack, gpu, nnapi "
                                         "or none (the builtin CPU kernels).")
    quantization: str = setting("int8", "TFLite export of each student, checked against the "
                                "float model on the test split; auto: the fastest export on "
                                "the first target within --max_quantization_drop (int8, int8 "
                                "with its worst layers in float, dynamic, float16, float32); "
                                "none: no export and no latency.",
                                choices=(*tfkd.export.QUANTIZATIONS, "auto", "none"))
    diagnose_quantization: bool = setting(False, "Per-layer int8 error of each exported "
                                          "student (tfkd.quantization.diagnose, ~10 s a run): "
                                          "quantization_errors.csv in its folder and a plot in "
                                          "the report. quantization=auto diagnoses whenever "
                                          "full int8 misses the budget.")
    max_quantization_drop: float = setting(1.0, "Accuracy points the export may lose before it "
                                           "is flagged.")
    teacher_cache: str = setting("auto", "auto: run each teacher once over the train and test "
                                 "splits, store its logits (tfkd.TeacherCache, in the teacher's "
                                 "folder) and distil every student from them; off: run the "
                                 "teacher on every student step. auto falls back to off for "
                                 "splits too large to hold in memory.", choices=("auto", "off"))
    verbose: int = setting(2, "Keras progress bar per epoch: 0 quiet, 1 bar, 2 a line per "
                           "epoch.")
    strategy: str = setting("default", "tf.distribute strategy: default (one device), mirrored "
                            "(every GPU of this machine), multi_worker (machines listed in "
                            "$TF_CONFIG) or tpu.", choices=tuple(tfkd.distribute.STRATEGIES))
    shard_index: int = setting(0, "This machine's share of the runs: 0 .. --num_shards - 1. "
                               "Shards write into the same run layout; python -m tfkd.report "
                               "merges their study folders.")
    num_shards: int = setting(1, "Machines the runs are split across (round-robin in run "
                              "order); 1: every run here.")

    def __post_init__(self):
        # Lists are tuples (hashable, and a config cannot be changed through a shared list);
        # a lone string is one item, not a sequence of characters.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _is_sequence_type(field.type) and isinstance(value, (str, int)):
                value = (value,)
            if _is_sequence_type(field.type) and isinstance(value, (list, tuple)):
                setattr(self, field.name, tuple(value))

    def check(self):
        """Raises `ConfigError` for a setting the study cannot run with, before any work."""
        for name in ("epochs", "teacher_epochs", "batch_size"):
            if _int_below(getattr(self, name), 1):
                raise ConfigError(lambda n, name=name: f"{n(name)}={getattr(self, name)}; "
                                  "pass at least 1")
        if _int_below(self.recalibrate_bn_batches, 0):
            raise ConfigError(lambda n: f"{n('recalibrate_bn_batches')}="
                              f"{self.recalibrate_bn_batches}; pass 0 (off) or a number of "
                              "batches, e.g. 20")
        check_ints(self.seeds, "seeds", 0, "0,1,2")
        if _int_below(self.teacher_warmup_epochs, 0) or not self.teacher_finetune_lr_scale > 0:
            raise ConfigError(lambda n: f"{n('teacher_warmup_epochs')}="
                              f"{self.teacher_warmup_epochs} {n('teacher_finetune_lr_scale')}="
                              f"{self.teacher_finetune_lr_scale}; pass an int >= 0 and a "
                              "number > 0, e.g. 1 and 0.1")
        if self.targets:  # checked before any training, used after it
            check_ints(self.bench_threads, "bench_threads", 1, "1,2")
        self._check_choices()
        try:
            tfkd.features.parse(self.features)
        except ValueError as e:
            reason = str(e)
            raise ConfigError(lambda n: f"{n('features')}: {reason}") from None
        for target in self.targets:
            try:
                tfkd.bench.target_kind(target)
            except ValueError as e:
                raise ConfigError(lambda n, e=e: f"{n('targets')}: {e}") from None
            try:
                tfkd.bench.check(target, delegate=self.delegates)
            except ValueError as e:
                raise ConfigError(lambda n, e=e: f"{n('targets')} with {n('delegates')}: {e}") \
                    from None
        self._check_bench_options()
        if self.teacher_path:
            check_teacher_path(self.teacher_path)
        else:
            teachers = self.teacher_names()
            check_models(*teachers)
            for teacher in teachers:
                check_sizes([self.teacher_size], teacher, "teacher_size")
            check_weights(self.teacher_weights, teachers, "teacher_weights")
        check_weights(self.student_weights, [], "student_weights")
        self._check_shards()

    def teacher_names(self):
        """The teachers the study trains (a recipe with several overrides this)."""
        return [self.teacher]

    def _check_choices(self):
        for field in dataclasses.fields(self):
            choices = field_metadata(type(self), field.name).get("choices")
            if choices and getattr(self, field.name) not in choices:
                raise ConfigError(lambda n, f=field: f"{n(f.name)}={getattr(self, f.name)!r}; "
                                  f"choose one of {', '.join(choices)}")
        unknown = [d for d in self.delegates if d not in tfkd.bench.DELEGATES]
        if unknown or not self.delegates:
            raise ConfigError(lambda n: f"{n('delegates')}={show(self.delegates)}: unknown "
                              f"delegate(s) {unknown}; choose from "
                              f"{', '.join(tfkd.bench.DELEGATES)}")

    def bench_kwargs(self, target):
        """The --bench_options `target` takes, as `tfkd.bench.run` keywords (an ssh key goes to
        ssh targets only; paths have ~ expanded, connect_timeout_s is a number)."""
        takes = _bench_options_of(tfkd.bench.target_kind(target))
        kwargs = {}
        for key, _, value in (item.partition("=") for item in self.bench_options):
            if key not in takes:
                continue
            if key in REPEATED_OPTIONS:
                kwargs[key] = kwargs.get(key, ()) + (value,)
            elif key == "connect_timeout_s":
                kwargs[key] = float(value)
            else:
                kwargs[key] = os.path.expanduser(value) if key in PATH_OPTIONS else value
        return kwargs

    def _check_bench_options(self):
        def fail(reason):  # reason: a function of the name renderer, as ConfigError takes
            raise ConfigError(lambda n: f"{n('bench_options')}={show(self.bench_options)}: "
                              + reason(n))

        known = {key: kind for kind in tfkd.bench.targets.TARGETS
                 for key in _bench_options_of(kind)}
        kinds = {tfkd.bench.target_kind(t) for t in self.targets}
        for item in self.bench_options:
            key, equals, value = item.partition("=")
            if not key or not equals:
                fail(lambda n: f"{item!r} is not KEY=VALUE; e.g. config_file=~/.ssh/pi_config")
            if key not in known:
                fail(lambda n: f"unknown option {key!r}; choose from {', '.join(sorted(known))}")
            if known[key] not in kinds:
                fail(lambda n: f"{key} is for {known[key]} targets and {n('targets')}="
                     f"{show(self.targets)} names none")
            if key == "connect_timeout_s" and not _positive_number(value):
                fail(lambda n: f"connect_timeout_s={value!r}; pass seconds, e.g. 10")

    def _check_shards(self):
        index, count = self.shard_index, self.num_shards
        if _int_below(count, 1) or not 0 <= index < count:
            raise ConfigError(lambda n: (
                f"{n('shard_index')}={index} {n('num_shards')}={count}: pass "
                f"{n('num_shards')}=N (N >= 1, the number of machines) and a different "
                f"{n('shard_index')} from 0 to N-1 on each, e.g. {n('shard_index')}=0 "
                f"{n('num_shards')}=2 on one and {n('shard_index')}=1 {n('num_shards')}=2 on "
                "the other"))

    def to_flags(self):
        """The settings as the command line spells them (lists as strings), for config.json."""
        return {f.name: ([str(v) for v in getattr(self, f.name)] if _is_sequence_type(f.type)
                         else getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        """A copy with `changes` applied (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)


def _bench_options_of(kind):
    """The --bench_options keys a target kind takes: its connection's options, and
    benchmark_binary for adb (the one target whose tool is benchmark_model)."""
    return tfkd.bench.targets.TARGETS[kind].OPTIONS + (TOOL_OPTIONS if kind == "adb" else ())


def _positive_number(text):
    try:
        return float(text) > 0
    except ValueError:
        return False


def field_metadata(config_class, name):
    """The help and choices of field `name`: a subclass that only changes a default inherits
    them from the class that declared the field."""
    for klass in config_class.__mro__:
        declared = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if declared is not None and declared.metadata.get("help"):
            return declared.metadata
    return {}


def _is_sequence_type(annotation):
    return typing.get_origin(annotation) is tuple


def _int_below(value, minimum):
    return isinstance(value, bool) or not isinstance(value, int) or value < minimum


def check_ints(values, name, minimum, example):
    """A `ConfigError` unless `values` is a non-empty sequence of ints >= `minimum`."""
    if not values or any(_int_below(v, minimum) for v in values):
        raise ConfigError(lambda n: f"{n(name)} must be comma-separated integers >= {minimum}, "
                          f"got {show(values)!r}; e.g. {n(name)}={example}")


def check_models(*names, field=None):
    """A `ConfigError` naming the zoo when a model name is unknown (or, with `field`, when
    there is no name at all). "hub:PRESET" names are checked when their preset is read."""
    if field and not names:
        raise ConfigError(lambda n: f"{n(field)} is empty; name at least one model, e.g. "
                          f"{n(field)}=mobilenetv3_small")
    known = tfkd.list_models()
    unknown = [name for name in names if name not in known and not tfkd.models.hub.is_hub(name)]
    if unknown:
        hints = "".join(f" ({u}: {hint})" for u in unknown
                        for hint in [tfkd.models.did_you_mean(u)] if hint)
        raise ConfigError(lambda n: f"unknown model(s) {unknown}{hints}; choose from {known}")


def check_sizes(sizes, model, name):
    """A `ConfigError` unless every side in `sizes` is one `model` accepts."""
    if not sizes or any(_int_below(s, 1) for s in sizes):
        raise ConfigError(lambda n: f"{n(name)} must be comma-separated integers, got "
                          f"{show(sizes)!r}; e.g. {n(name)}=32,48,64")
    try:
        minimum = tfkd.models.min_image_size(model)
    except (ImportError, OSError, ValueError) as e:  # a hub preset that cannot be read
        # `e` is unbound when the except block ends; the lambda runs later, so keep its text.
        reason = str(e)
        raise ConfigError(lambda n: f"{n(name)}: {reason}") from None
    too_small = [s for s in sizes if s < minimum]
    if too_small:
        raise ConfigError(lambda n: f"{n(name)}={show(sizes)}: {model} needs sides of at least "
                          f"{minimum}; drop {too_small} or pick another model.")


def check_weights(weights, models, name):
    """A `ConfigError` unless `weights` is empty, "imagenet" (for models that have ImageNet
    weights) or an existing weights file."""
    if not weights:
        return
    if weights == "imagenet":
        have = tfkd.models.pretrained_models()
        missing = [m for m in models if m not in have]
        if missing:
            raise ConfigError(lambda n: f"{n(name)}=imagenet: {missing} have no ImageNet "
                              f"weights in keras.applications; these do: {have}. A keras-hub "
                              "preset (hub:PRESET) starts from its own weights.")
        return
    if not weights.endswith((".h5", ".hdf5")) or not os.path.isfile(weights):
        raise ConfigError(lambda n: f"{n(name)}={weights}: pass imagenet or the path of an "
                          "existing .h5 (ImageNet backbone) or .weights.h5 file")


def check_teacher_path(path):
    """A `ConfigError` unless `path` is an existing .keras file."""
    if not path.endswith(".keras") or not os.path.isfile(path):
        raise ConfigError(lambda n: f"{n('teacher_path')}={path}: no such .keras file; pass a "
                          "teacher saved with model.save('teacher.keras'), e.g. the "
                          "teacher.keras that python -m tfkd.recipes.train_teacher prints")
