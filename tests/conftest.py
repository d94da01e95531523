"""Shared test setup.

Two logical CPU devices are configured before any TensorFlow op runs, so that the
MirroredStrategy tests run real two-replica training on this one CPU. Everything else places
ops on the first device, exactly as without this setting.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests import sshd  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A throwaway sshd on 127.0.0.1 (tests/sshd.py), shared by every test that needs a board;
    skipped where sshd cannot run."""
    try:
        running = sshd.start(tmp_path_factory.mktemp("sshd"))
    except sshd.Unavailable as reason:
        pytest.skip(str(reason))
    yield running
    running.stop()
