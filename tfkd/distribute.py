"""`tf.distribute` strategies by name, as the recipes' `--strategy` flag picks them.

    strategy = tfkd.distribute.get_strategy("mirrored")
    with strategy.scope():
        teacher = tfkd.create_model(...)
        student = tfkd.create_model(...)
        distiller = tfkd.Distiller(teacher=teacher, student=student)
        distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(train)  # train's batch size is the global batch, split across replicas

Names: "default" (one device, TensorFlow's default strategy), "mirrored" (every GPU of this
machine, or its CPU devices when it has no GPU), "multi_worker" (several machines, described by
the TF_CONFIG environment variable) and "tpu" (a Cloud TPU).
"""

import json
import os
import warnings

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

_TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\' on the first machine and '
                      '"index": 1 on the second')


def get_strategy(name="default", *, tpu=None):
    """The `tf.distribute.Strategy` called `name`.

    Args:
        name: one of `STRATEGIES`.
        tpu: for "tpu", the TPU's name or grpc:// address; default: $TPU_NAME, else "local"
            (the TPU of a Cloud TPU VM).

    Returns:
        The strategy. Create every model, the Distiller and the optimizer inside its
        `scope()`; the dataset's batch size is the global batch.

    Raises:
        ValueError: an unknown name, a missing or malformed TF_CONFIG for "multi_worker", or
            no TPU found for "tpu"; the message says what to do.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored()
    if name == "multi_worker":
        config = read_tf_config()  # a clear error before TensorFlow's own, deeper one
        if sum(len(tasks) for tasks in config["cluster"].values()) > 1:
            _fix_keras_multi_worker_fit()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu(tpu)
    raise ValueError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")


def _mirrored():
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if gpus:
        return tf.distribute.MirroredStrategy(gpus)
    # Without a GPU, mirror over the CPU devices: one unless the program split the CPU into
    # logical devices (as tfkd's tests do). Training then runs, but gains nothing: say why.
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(cpus) == 1:
        warnings.warn("--strategy=mirrored found no GPU, so it trains on one replica on the "
                      "CPU; check tf.config.list_physical_devices('GPU') (a TensorFlow build "
                      "with CUDA, e.g. pip install 'tensorflow[and-cuda]').", RuntimeWarning,
                      stacklevel=3)
    # Reduced through one device rather than with collective ops: collective instance keys
    # restart with every MirroredStrategy, so a second one in the same process (a re-run
    # notebook cell, a second study) fails with "Shape mismatch in the collective instance".
    # On CPUs the collectives bring no speed to lose.
    return tf.distribute.MirroredStrategy(
        cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def read_tf_config(environ=None):
    """The cluster description in $TF_CONFIG, checked.

    Args:
        environ: the environment to read; default `os.environ`.

    Returns:
        The parsed TF_CONFIG dict: `{"cluster": {"worker": [...], ...}, "task": {"type": ...,
        "index": ...}}`.

    Raises:
        ValueError: TF_CONFIG is missing, not JSON, or does not name this task in its cluster.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not text:
        raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable on "
                         f"every worker, e.g. {_TF_CONFIG_EXAMPLE}; for several GPUs of one "
                         "machine use --strategy=mirrored")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); set it like "
                         f"{_TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list) \
            or not cluster["worker"]:
        raise ValueError("TF_CONFIG has no \"cluster\": {\"worker\": [\"host:port\", ...]} "
                         f"list; set it like {_TF_CONFIG_EXAMPLE}")
    if not isinstance(task, dict) or task.get("type") not in cluster \
            or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG's \"task\" ({task!r}) must name this machine in the "
                         "cluster: {\"type\": \"worker\", \"index\": i} with i its position in "
                         "the worker list (0 on the first machine)")
    return config


def is_chief(tf_config):
    """Whether this task is the cluster's chief: the "chief" task, else worker 0.

    Args:
        tf_config: a dict from `read_tf_config`.
    """
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def _tpu(name):
    name = name or os.environ.get("TPU_NAME") or "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        # TensorFlow's first sentence says what failed; the rest is kernel registry detail.
        reason = str(e).strip().split(". ")[0].rstrip(".")[:200] or type(e).__name__
        raise ValueError(f"--strategy=tpu found no TPU (TPU {name!r}: {reason}); run on a "
                         "Cloud TPU VM, or set TPU_NAME to your TPU's name; on GPUs use "
                         "--strategy=mirrored, on a CPU --strategy=default") from None
    return tf.distribute.TPUStrategy(resolver)


def _fix_keras_multi_worker_fit():
    """Lets Keras 3.15's fit() and evaluate() run on a cluster of several workers.

    Keras 3 (from TensorFlow 2.16 on, keras-team/keras#20585, still open) fails there in two
    places, for any model: before the first step it averages the replicas' first input batch
    across workers just to learn its shapes ("Attempt to convert a value (PerReplica...)"), and
    after each step it averages the scalar logs with `strategy.reduce("MEAN", v, axis=0)`
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Here the shapes come from
    this worker's own share of the batch, and scalars are averaged without an axis. Only
    multi-worker training is touched; if Keras changes these internals, nothing is patched.
    """
    from keras.src.backend.tensorflow import trainer  # pylint: disable=import-outside-toplevel

    cls = getattr(trainer, "TensorFlowTrainer", None)
    reduce_per_replica = getattr(trainer, "reduce_per_replica", None)
    if cls is None or reduce_per_replica is None or getattr(trainer, "_tfkd_fixed", False):
        return
    symbolic_build = cls._maybe_symbolic_build

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and _is_multi_worker(self._distribute_strategy):
            local = self._distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(lambda v: local(v)[0], next(batches))
                break
            iterator = None
        return symbolic_build(self, iterator=iterator, data_batch=data_batch)

    def reduce(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multi_worker(strategy):
            def mean(v):  # v: a tensor, or a PerReplica when a worker has several devices
                scalar = strategy.experimental_local_results(v)[0].shape.rank == 0
                return strategy.reduce("MEAN", v, axis=None if scalar else 0)
            return tf.nest.map_structure(mean, values)
        return reduce_per_replica(values, strategy, reduction)

    cls._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce
    trainer._tfkd_fixed = True


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) \
        and strategy.extended._in_multi_worker_mode()  # pylint: disable=protected-access
