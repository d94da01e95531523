"""BatchNormalization statistics recomputed for a model's current weights.

A BatchNormalization layer predicts with moving averages of the batch statistics it saw while
its weights kept changing. After a short run (an epoch or two) those averages lag the final
weights, and a model whose training accuracy is fine can score near chance in inference mode:
a MobileNetV3-Small after one KD epoch on 5,000 Fashion-MNIST images scored 0.10 on the test
set, 0.74 once its statistics were recomputed. Ranking short runs (the budget search's first
rounds) by such accuracies ranks the statistics, not the models.
"""

import itertools

import keras

from tfkd.models.finetune import all_layers


def recalibrate_batch_norm(model, dataset, batches=20):
    """Recomputes the moving mean and variance of every trainable BatchNormalization layer of
    `model` as the plain average of their values on `batches` batches of `dataset`.

    The model runs forward in training mode without a gradient step, so no weight changes;
    frozen BatchNormalization layers (inference mode in Keras 3) keep their statistics. Other
    layers that learn from forward passes alone, such as the moving-range fake quantization of
    `tfkd.qat`, would update too: recalibrate before `quantize_model`, not after.

    Args:
        model: a Keras model.
        dataset: batches of images at the model's input size, or (images, ...) tuples (a
            training split: the statistics should be the training data's).
        batches: how many batches to average (each batch counts alike).

    Returns:
        The number of batches used (fewer when the dataset is shorter).

    Raises:
        ValueError: `batches` < 1, or an empty dataset.
    """
    if batches < 1:
        raise ValueError(f"batches={batches}: pass at least 1 (20 batches of 128 images give "
                         "stable statistics)")
    layers = [layer for layer in all_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for used, batch in enumerate(itertools.islice(dataset, batches), start=1):
            # moving = momentum * moving + (1 - momentum) * batch: with momentum (k-1)/k at the
            # k-th batch, the moving value is the mean of the k batches seen so far.
            for layer in layers:
                layer.momentum = (used - 1) / used
            model(batch[0] if isinstance(batch, (tuple, list)) else batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if not used:
        raise ValueError("recalibrate_batch_norm got an empty dataset; pass training batches")
    return used
