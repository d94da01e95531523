"""The recipes' command line: absl flags made from a recipe's config class, and back.

Every field of the config is a flag of the same name, with the field's default and help; lists
are comma-separated. `main` is the only place that reads absl's FLAGS: it builds the config,
runs the recipe's `run(config)` and turns a `ConfigError` into a usage error that names flags.
"""

import dataclasses
import typing

from absl import app, flags
from absl import logging as absl_logging

from tfkd.recipes.config import ConfigError, field_metadata


def define_flags(config_class, flag_values=flags.FLAGS):
    """Defines one flag per field of `config_class` (a `StudyConfig` dataclass)."""
    for field in dataclasses.fields(config_class):
        meta = field_metadata(config_class, field.name)
        name, default, text, kind = field.name, field.default, meta["help"], _kind(field)
        if kind is tuple:
            flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=flag_values)
        elif meta.get("choices"):
            flags.DEFINE_enum(name, default, list(meta["choices"]), text,
                              flag_values=flag_values)
        else:
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
            define(name, default, text, flag_values=flag_values)
    # A recipe may give a field a shorter flag where its meaning is plain (train_teacher:
    # --weights for --teacher_weights); the field's own flag works too.
    for alias, name in getattr(config_class, "FLAG_ALIASES", {}).items():
        flags.DEFINE_alias(alias, name, flag_values=flag_values)


def config_from_flags(config_class, flag_values=flags.FLAGS):
    """The config the parsed flags describe (not yet checked: `config.check()` does that)."""
    values = {}
    for field in dataclasses.fields(config_class):
        value = flag_values[field.name].value
        if _kind(field) is tuple:
            (item, *_) = typing.get_args(field.type)
            value = tuple(_to_int(v) if item is int else v for v in value)
        values[field.name] = value
    return config_class(**values)


def main(run, config_class):
    """The `__main__` of a recipe: defines its flags, parses argv and calls `run(config)`."""
    define_flags(config_class)

    def _main(argv):
        del argv
        quiet_tensorflow_logging()
        try:
            run(config_from_flags(config_class))
        except ConfigError as e:
            raise app.UsageError(e.as_flags()) from None

    app.run(_main)


def quiet_tensorflow_logging():
    """Hides TensorFlow's Python INFO lines unless --verbosity asks for them.

    absl's app.run logs INFO by default, and the TFLite converter then prints a dozen lines per
    export (SavedModel assets, fingerprints) that bury the recipe's own progress.
    """
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def _kind(field):
    return tuple if typing.get_origin(field.type) is tuple else field.type


def _to_int(text):
    # A value that is not a number stays text: config.check() refuses it with a message that
    # names the flag and shows an example.
    try:
        return int(text)
    except ValueError:
        return text
