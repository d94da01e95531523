"""Benchmark .tflite models on an Android phone over adb with the official `benchmark_model`.

    results = android_bench.run("student_int8.tflite", threads=(1, 4),
                                delegates=("xnnpack", "gpu"), output_dir="runs/android_bench")
    devices = android_bench.list_devices()

or from a shell: `python -m android_bench student_int8.tflite --threads 1,4 --use_gpu`.

`run` and `format_table` load on first use: they import tfkd, and so TensorFlow, which takes
seconds; listing devices and the errors do not need it.
"""

from android_bench.adb import Device, list_devices
from android_bench.errors import (AdbError, AdbNotFound, AdbTimeout, DeviceLost, DeviceNotReady,
                                  MultipleDevices, NoDevice, NotExecutable, RemoteCommandFailed)

__all__ = ["AdbError", "AdbNotFound", "AdbTimeout", "Device", "DeviceLost", "DeviceNotReady",
           "MultipleDevices", "NoDevice", "NotExecutable", "RemoteCommandFailed", "format_table",
           "list_devices", "run"]

_LAZY = {"run": "android_bench.runner", "format_table": "android_bench.output"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'android_bench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
