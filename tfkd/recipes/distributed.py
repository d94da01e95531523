"""How a recipe's runs are executed: the --strategy and the --shard_index/--num_shards flags.

What a study computes is in the engine; these settings only decide where it runs, so they are
left out of the study folder's config check (shards and strategies share one study folder).
"""

import os

import tfkd
from tfkd.recipes.config import ConfigError


# One strategy per process and name: TensorFlow cannot set up a multi-worker cluster twice.
_strategies = {}


def strategy(name):
    """The `tf.distribute` strategy called `name`, created on first use, then reused.

    Create models, Distillers and optimizers inside its `scope()`; under "default" (TensorFlow's
    default strategy) the scope changes nothing.
    """
    if name not in _strategies:
        try:
            _strategies[name] = tfkd.distribute.get_strategy(name)
        except ValueError as e:
            raise ConfigError(lambda n, e=e: str(e)) from None
    return _strategies[name]


def start_strategy(config):
    """Creates the strategy before any other TensorFlow op (multi_worker requires it)."""
    if config.strategy == "multi_worker" and getattr(config, "budget_s", 0):
        raise ConfigError(lambda n: f"{n('budget_s')} cannot be used with {n('strategy')}="
                          "multi_worker: each worker would stop by its own clock and the others "
                          f"would wait for it forever; give every student {n('epochs')} instead")
    replicas = strategy(config.strategy).num_replicas_in_sync
    # Keras 3.15 averages the replicas' first batches to build a model, which fails with
    # "Inputs to operation AddN ... must have the same size" when they differ in size.
    batch = config.batch_size
    if batch % replicas:
        raise ConfigError(lambda n: (
            f"{n('batch_size')}={batch} does not split evenly across the {replicas} replicas "
            f"of {n('strategy')}={config.strategy}; pass a multiple of {replicas}, e.g. "
            f"{n('batch_size')}={replicas * max(1, round(batch / replicas))}"))
    if config.strategy != "default":
        print(f"strategy {config.strategy}: {replicas} replica(s); global batch {batch}, "
              f"{batch // replicas} per replica", flush=True)


def output_root(config):
    """--output_dir, except for the non-chief workers of a multi_worker cluster.

    Every worker trains the same runs and writes the same files; on a shared filesystem they
    would overwrite one another's. So only the chief (the "chief" task, else worker 0) writes to
    --output_dir, and each other worker to OUTPUT_DIR/workers/TYPE-INDEX/.
    """
    if config.strategy != "multi_worker":
        return config.output_dir
    try:
        tf_config = tfkd.distribute.read_tf_config()
    except ValueError as e:
        raise ConfigError(lambda n, e=e: str(e)) from None
    if tfkd.distribute.is_chief(tf_config):
        return config.output_dir
    task = tf_config["task"]
    return os.path.join(config.output_dir, "workers", f"{task['type']}-{task['index']}")


def note_shard_teacher(config):
    """Says, when a shard trains a teacher, how to share one teacher across shards."""
    if config.num_shards > 1:
        print(f"shard {config.shard_index} of {config.num_shards} trains this teacher itself; "
              "for one teacher shared by every shard, start the others once one has saved it "
              "(into the same folder, or copy that study folder to each machine)", flush=True)


def shard_runs(runs, shard_index, num_shards):
    """The runs of shard `shard_index` (of `num_shards`): round-robin in plan order.

    The plan follows from the config alone, so every machine computes the same shards:
    disjoint, and together every run. A run that starts from another run's saved student
    (`init_from`, as finetune_after_kd's kd+ft) goes with that run, so it finds the file.
    """
    group_of, groups = {}, 0
    for spec in runs:
        parent = os.path.basename(os.path.dirname(spec.init_from or ""))
        if parent in group_of:
            group_of[spec.run_id] = group_of[parent]
        else:
            group_of[spec.run_id], groups = groups, groups + 1
    return [spec for spec in runs if group_of[spec.run_id] % num_shards == shard_index]
