"""How a recipe's runs are executed: the --strategy and the --shard_index/--num_shards flags.

What a study computes is in `common` and `engine`; these flags only decide where it runs, so
they are left out of the study's config (shards and strategies share one study folder).
"""

import os

from absl import app

import tfkd


def check_shards(cfg):
    """A usage error unless 0 <= --shard_index < --num_shards."""
    index, count = cfg.shard_index, cfg.num_shards
    if count < 1 or not 0 <= index < count:
        raise app.UsageError(
            f"--shard_index={index} --num_shards={count}: pass --num_shards=N (N >= 1, the "
            "number of machines) and a different --shard_index from 0 to N-1 on each, e.g. "
            "--shard_index=0 --num_shards=2 on one and --shard_index=1 --num_shards=2 on the "
            "other")


# One strategy per process and name: TensorFlow cannot set up a multi-worker cluster twice.
_strategies = {}


def strategy(cfg):
    """The `tf.distribute` strategy --strategy names, created on first use, then reused.

    Create models, Distillers and optimizers inside its `scope()`; under "default" (TensorFlow's
    default strategy) the scope changes nothing.
    """
    name = getattr(cfg, "strategy", "default")
    if name not in _strategies:
        try:
            _strategies[name] = tfkd.distribute.get_strategy(name)
        except ValueError as e:
            raise app.UsageError(str(e)) from None
    return _strategies[name]


def start_strategy(cfg):
    """Creates the strategy before any other TensorFlow op (multi_worker requires it)."""
    if cfg.strategy == "multi_worker" and getattr(cfg, "budget_s", 0):
        raise app.UsageError("--budget_s cannot be used with --strategy=multi_worker: each "
                             "worker would stop by its own clock and the others would wait for "
                             "it forever; give every student --epochs instead")
    replicas = strategy(cfg).num_replicas_in_sync
    # Keras 3.15 averages the replicas' first batches to build a model, which fails with
    # "Inputs to operation AddN ... must have the same size" when they differ in size.
    if cfg.batch_size % replicas:
        raise app.UsageError(f"--batch_size={cfg.batch_size} does not split evenly across the "
                             f"{replicas} replicas of --strategy={cfg.strategy}; pass a multiple "
                             f"of {replicas}, e.g. --batch_size="
                             f"{replicas * max(1, round(cfg.batch_size / replicas))}")
    if cfg.strategy != "default":
        print(f"strategy {cfg.strategy}: {replicas} replica(s); global batch {cfg.batch_size}, "
              f"{cfg.batch_size // replicas} per replica", flush=True)


def output_root(cfg):
    """--output_dir, except for the non-chief workers of a multi_worker cluster.

    Every worker trains the same runs and writes the same files; on a shared filesystem they
    would overwrite one another's. So only the chief (the "chief" task, else worker 0) writes to
    --output_dir, and each other worker to OUTPUT_DIR/workers/TYPE-INDEX/.
    """
    if getattr(cfg, "strategy", "default") != "multi_worker":
        return cfg.output_dir
    try:
        tf_config = tfkd.distribute.read_tf_config()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if tfkd.distribute.is_chief(tf_config):
        return cfg.output_dir
    task = tf_config["task"]
    return os.path.join(cfg.output_dir, "workers", f"{task['type']}-{task['index']}")


def note_shard_teacher(cfg):
    """Says, when a shard trains a teacher, how to share one teacher across shards."""
    if getattr(cfg, "num_shards", 1) > 1:
        print(f"shard {cfg.shard_index} of {cfg.num_shards} trains this teacher itself; for one "
              "teacher shared by every shard, start the others once one has saved it (into the "
              "same folder, or copy that study folder to each machine)", flush=True)
