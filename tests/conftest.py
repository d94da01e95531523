"""Shared test setup.

Two logical CPU devices are configured before any TensorFlow op runs, so that the
MirroredStrategy tests run real two-replica training on this one CPU. Everything else places
ops on the first device, exactly as without this setting.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
