"""One epoch of KD on tiny models, run by test_distribution.py on one device, two replicas and
two worker processes (`python -m tests.distributed_worker` with TF_CONFIG set: prints JSON).

Kept apart from the test module so that a worker imports only what it runs.
"""

import json

import keras
import tensorflow as tf
from keras import layers

import tfkd
from tests.helpers import batch


def tiny_sequential(size, name):
    """Conv + dense logits on raw pixels, without BatchNormalization.

    In training, BatchNormalization normalizes with each replica's own share of the batch, so
    two replicas would rightly differ from one device for a reason that has nothing to do with
    the Distiller. Without it, a step on two replicas is the same arithmetic as on one.
    """
    return keras.Sequential([keras.Input((size, size, 3)), layers.Rescaling(1 / 255),
                             layers.Conv2D(4, 3, strides=2, activation="relu"),
                             layers.GlobalAveragePooling2D(), layers.Dense(3)], name=name)


def build_distiller(strategy):
    """(distiller, student) created under `strategy`, with the same initial weights each time."""
    with strategy.scope():
        keras.utils.set_random_seed(0)
        student = tiny_sequential(12, "student")  # smaller than the teacher: resized per replica
        distiller = tfkd.Distiller(teacher=tiny_sequential(16, "teacher"), student=student,
                                   temperature=2.0, student_loss_weight=0.3)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    return distiller, student


def kd_epoch(strategy, n=32, global_batch=8):
    """One epoch of KD under `strategy`: (fit logs, evaluate logs, student weights as lists)."""
    distiller, student = build_distiller(strategy)
    data = tf.data.Dataset.from_tensor_slices(batch(16, n=n, seed=5)).batch(global_batch)
    logs = {k: v[-1] for k, v in distiller.fit(data, epochs=1, verbose=0).history.items()}
    evaluated = distiller.evaluate(data, verbose=0, return_dict=True)
    return logs, evaluated, [w.tolist() for w in student.get_weights()]


def main():
    strategy = tfkd.distribute.get_strategy("multi_worker")
    logs, evaluated, weights = kd_epoch(strategy)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "logs": logs,
                      "evaluate": evaluated, "weights": weights}))


if __name__ == "__main__":
    main()
