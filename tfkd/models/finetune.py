"""Fine-tuning a pretrained model: which layers learn.

Keras 3 runs a BatchNormalization layer whose `trainable` is False in inference mode, so
freezing keeps its statistics too (keras.io's transfer-learning guide relies on this).
"""

import keras


def all_layers(model):
    """Every layer of `model`, nested models' layers included (depth first)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def freeze_batch_norm(model):
    """Freezes every BatchNormalization layer of `model` (nested models too): in Keras 3 a
    frozen one runs in inference mode, so fine-tuning keeps its (ImageNet) statistics, as
    Keras's transfer-learning guide advises. Recompile after calling this."""
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def freeze_backbone(model, frozen=True):
    """Freezes (or unfreezes) everything but the classification head of `model`.

    The head is the classifier of a keras-hub model (all but its backbone), the family's head
    layers for a zoo model (`HEAD_LAYERS`, e.g. MobileNetV3's conv_2 and logits), or else the
    last layer with weights. A frozen BatchNormalization layer runs in inference mode (Keras 3),
    so its ImageNet statistics are kept. Recompile after calling this.
    """
    classifier = next((layer for layer in model.layers if hasattr(layer, "backbone")), None)
    if classifier is not None:
        classifier.backbone.trainable = not frozen
        return
    from tfkd import models  # noqa: PLC0415 - the family table imports this module

    head = set(getattr(models._family_of(model.name), "HEAD_LAYERS", ())
               if model.name in models.list_models() else ())
    weighted = [layer for layer in model.layers if layer.weights]
    head = head or {weighted[-1].name}
    for layer in weighted:
        if layer.name not in head:
            layer.trainable = not frozen
