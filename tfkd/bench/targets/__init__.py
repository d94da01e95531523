"""Where a benchmark runs: one module per kind of target, found through the table `TARGETS`.

    "local"                  this machine                            targets/local.py
    "adb", "adb:SERIAL"      an Android phone over adb               targets/adb.py
    "ssh:user@host[:port]"   a Linux board (Raspberry Pi) over ssh   targets/ssh.py

A target module knows how to reach its device and nothing about benchmark tools; the tool drivers
(`tfkd.bench.DRIVERS`) run on any target through the interface below. So a new target, an iOS
device or an NPU board, is ONE new module here plus ONE entry in `TARGETS` (and its import
above it); `tfkd.bench.run`, the drivers, the parsers, the recipes' `--targets` check and the
error messages that list targets and delegates all read this table. A device without a prebuilt
`benchmark_model` raises in `benchmark_platform` and its users pass `benchmark_binary=`; one
that cannot run a shell maps `run`'s argv onto whatever runs programs there.

The module contract (targets/adb.py is a complete example):

    FORMS       tuple of the target strings it takes, quoted, for error messages:
                ("'adb' (the only phone attached)", "'adb:SERIAL'").
    TOOLS       {tool name: delegates it can run there}; the first tool is the default. Tools
                are those of `tfkd.bench.DRIVERS`, delegates those of
                `tfkd.bench.DELEGATES`.
    OPTIONS     keyword options `open` takes besides `timeout_s` (the adb executable, ssh keys).
    matches(target) -> bool      whether a target string is of this kind (a prefix check).
    parse(target)                checks the whole string; ValueError showing the forms if bad.
    open(target, *, timeout_s, **options)
                a context manager: checks the options (ValueError before contacting anything),
                reaches the device and yields a Device; on exit it calls `device.cleanup(error)`
                with the exception that ended the block, or None. `cleaning_up` does that part.

A Device (the object `open` yields):

    name        BenchResult.target: "local", "adb:R58M123ABC", the ssh string as given.
    folder      the run folder on the device: `put` copies into it, a tool may write files in it
                for `fetch`; nothing outside it is written. Removed by `cleanup`.
    warnings    notes for every result (a hot battery, a throttled board); also logged/warned.
    extra       fields for every result's `extra` (where it ran: remote_dir, host, ...).
    python      the device's Python command, for the "litert" runner script; None if it has
                none (then TOOLS must not list "litert").
    describe() -> dict           BenchResult.device: model, CPU, OS, ... (None where unknown).
    benchmark_platform() -> str  the `tfkd.bench.fetch` platform of the prebuilt
                `benchmark_model` for this device; raises saying to pass benchmark_binary= if
                none fits.
    put(files, executable=()) -> {name: path on the device}
                copies {name: local path} into `folder` under those plain file names (a device
                that sees this machine's files, like "local", may return them in place); makes
                the names in `executable` executable, raising the target's error if it cannot.
    run(argv, timeout_s) -> Completed(status, output, command)
                runs argv (a list of words, each quoted by the target) in `folder`; output is
                stdout and stderr merged in order; status follows the shell (128+N: killed by
                signal N). If `put`'s executable cannot start there (wrong CPU), raises the
                target's error saying so. Past `timeout_s` it kills the local client and raises
                the target's timeout error; the process on the device is `cleanup`'s to stop.
    fetch(remote, local)         copies a file of the device to a local path;
                FileNotFoundError if the device has no such file.
    error(message, output="", status=None) -> Exception
                the target's exception for a command that ran but failed (for drivers).
    cleanup(error=None)          removes `folder`; with `error` (the exception ending the
                run) also kills what still runs there. A failure of its own is reported (a
                note on `error`, a warning, a log line), never raised over `error`.
"""

import collections
import contextlib

# Defined before the target modules are imported below: they build it.
Completed = collections.namedtuple("Completed", "status output command")
Completed.__doc__ = """A finished command: exit status, stdout+stderr merged, the command line
as the target ran it (for the record)."""


@contextlib.contextmanager
def cleaning_up(device):
    """Yields `device`, then calls `device.cleanup(error)` with the exception that ended the
    block (re-raised afterwards), or with None."""
    try:
        yield device
    except BaseException as error:
        device.cleanup(error)
        raise
    device.cleanup(None)


from tfkd.bench.targets import adb, local, ssh  # noqa: E402  (they import Completed)

# The table: target kind -> module. A new kind of target is one entry here.
TARGETS = {"local": local, "adb": adb, "ssh": ssh}


def kind_of(target):
    """The kind ("local", "adb", "ssh", ...) of a target string, the whole string checked.

    Raises:
        ValueError: no kind takes it, or its module finds it malformed; the message shows the
            forms.
    """
    for kind, module in TARGETS.items():
        if isinstance(target, str) and module.matches(target):
            module.parse(target)
            return kind
    forms = [form for module in TARGETS.values() for form in module.FORMS]
    raise ValueError(f"target={target!r}; use {', '.join(forms[:-1])} or {forms[-1]}")
