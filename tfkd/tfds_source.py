"""`tfds:NAME` datasets: TensorFlow Datasets, with a fast, clear failure when it cannot download.

TFDS looks for a prepared copy under its data folder (`$TFDS_DATA_DIR`, else
~/tensorflow_datasets) and downloads one otherwise. Without a network its downloader retries for
minutes and ends in a connection traceback; here a missing copy is first checked against a
quick connection to the download server, so an offline machine hears in seconds which dataset
is missing, where TFDS looked, and how to bring a copy over.
"""

import os
import socket

# Where TFDS downloads from (its own mirror; most datasets' files are there or behind it).
DOWNLOAD_SERVER = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 3.0


def import_tfds():
    """The `tensorflow_datasets` module; ImportError saying how to install it otherwise."""
    try:
        import tensorflow_datasets as tfds  # Optional: only for "tfds:NAME".
    except ImportError as e:
        raise ImportError("dataset 'tfds:...' needs TensorFlow Datasets: "
                          "pip install 'tfkd[tfds]' (or pip install tensorflow-datasets)") from e
    return tfds


def builder(name):
    """The TFDS builder of `name`, reading `$TFDS_DATA_DIR` as TFDS does.

    Raises:
        ValueError: TFDS has no dataset of that name (the message lists close ones).
    """
    tfds = import_tfds()
    try:
        return tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR") or None)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"tfds:{name}: {str(e).splitlines()[0]}; see "
                         "tfds.list_builders() for the names") from None


def prepared(name):
    """The builder of `name` with its data on disk: the local copy, else downloaded now.

    Raises:
        FileNotFoundError: no local copy, and the download server cannot be reached (within
            seconds, instead of TFDS's minutes of retries); the message says what to do.
    """
    found = builder(name)
    if not found.is_prepared():
        problem = _unreachable(DOWNLOAD_SERVER)
        if problem:
            root = _data_root(found)
            raise FileNotFoundError(
                f"tfds:{name} is not in TFDS's data folder ({found.data_dir} does not exist) "
                f"and it cannot be downloaded: {DOWNLOAD_SERVER[0]} is unreachable "
                f"({problem}). On a machine with a network run `python -c \"import "
                f"tensorflow_datasets as tfds; tfds.builder('{name}').download_and_prepare()\"`"
                f", then copy its {os.path.join('~/tensorflow_datasets', found.name)} folder "
                f"into {root} here (or set TFDS_DATA_DIR to a folder that holds it).")
        found.download_and_prepare()
    return found


def _unreachable(server):
    """None when a TCP connection to `server` opens within seconds, else why it did not."""
    try:
        with socket.create_connection(server, timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


def _data_root(found):
    """The data folder TFDS searched: `data_dir` without its NAME/[config/]version tail."""
    path = found.data_dir
    while path and os.path.basename(path) != found.name:
        parent = os.path.dirname(path)
        if parent == path:
            return os.path.dirname(found.data_dir)
        path = parent
    return os.path.dirname(path)
