"""Benchmark .tflite models on an Android phone over adb with the official `benchmark_model`.

    results = android_bench.run("student_int8.tflite", threads=(1, 4),
                                delegate=("xnnpack", "gpu"), output_dir="runs/android_bench")
    devices = android_bench.list_devices()

or from a shell:

    python -m android_bench student_int8.tflite --threads 1,4 --delegates xnnpack,gpu

The phone command line, built on `tfkd.bench` (the "adb" target, `tfkd.bench.targets.adb`):
imports go from here to tfkd, never back. Every name loads on first use, because importing
tfkd imports TensorFlow, which takes seconds: `import android_bench` itself stays instant.
"""

import importlib

# name -> the module that defines it.
_EXPORTS = {
    "run": "android_bench.runner",
    "format_table": "android_bench.output",
    "Device": "tfkd.bench.targets.adb_client",
    "list_devices": "tfkd.bench.targets.adb_client",
    **dict.fromkeys(("AdbError", "AdbNotFound", "AdbTimeout", "DeviceLost", "DeviceNotReady",
                     "MultipleDevices", "NoDevice", "NotExecutable", "RemoteCommandFailed"),
                    "tfkd.bench.targets.adb_errors"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'android_bench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
