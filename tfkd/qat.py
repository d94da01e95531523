"""Quantization-aware training for Keras 3 students: fake quantization where TFLite quantizes.

    qat_student = tfkd.qat.quantize_model(student, representative_data=train)
    distiller = tfkd.Distiller(teacher=teacher, student=qat_student)   # the teacher keeps teaching
    distiller.compile(optimizer="adam"); distiller.fit(train, epochs=2)
    tfkd.export.to_tflite(qat_student, "student_int8.tflite", representative_data=train)

`quantize_model` rebuilds the student's functional graph around the same layers (so the student
itself is trained too) with a `FakeQuant` layer after every layer whose output becomes an int8
tensor of free range in the TFLite file (convolutions, dense, BN, activations, add, multiply,
pooling, normalization, attention; see `_QUANTIZED_OUTPUTS`). It leaves out what the converter
fuses away: the output of a convolution or dense layer feeding only a BatchNormalization
(folded into its weights) and a BN or layer feeding only a ReLU/ReLU6 (fused into the op). So each trained range sits exactly on a
tensor the converter keeps, and the converter takes it from the fake-quant op instead of
calibrating: the ranges learned are the ranges shipped (a test checks the scales in the file).

A FakeQuant layer tracks the min and max of its input with a moving average in training and
quantizes with them (`tf.quantization.fake_quant_with_min_max_vars`, straight-through
gradients); weights stay float during training and are quantized per channel by the converter.
Inside layers that are one Keras op (MultiHeadAttention, keras-hub backbones) the converter still
calibrates on `representative_data`.
"""

import keras
import tensorflow as tf
from keras import tree

from tfkd.export import calibration_images, check_image_model

# Layers whose output the converter folds into the layer before (BN) or fuses into it (ReLU).
_FUSED_ACTIVATIONS = ("relu", "relu6")
# Layers whose int8 kernels take any output range: their outputs get a FakeQuant. Others keep
# the converter's own choice, calibrated on representative data as in post-training
# quantization: ops that must keep their input's scale (reshape, max pooling, concatenation),
# and the keras.ops pieces of patterns the converter fuses (x + 3 and * 1/6 in MobileNetV3's
# hard-sigmoid: ranges of their own there made HARD_SWISH fail to prepare, or stay in float).
_QUANTIZED_OUTPUTS = (
    keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense,
    keras.layers.EinsumDense, keras.layers.BatchNormalization, keras.layers.ReLU,
    keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
    keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D, keras.layers.Rescaling,
    keras.layers.Normalization, keras.layers.LayerNormalization,
    keras.layers.MultiHeadAttention, keras.layers.Activation)


@keras.saving.register_keras_serializable(package="tfkd")
class FakeQuant(keras.layers.Layer):
    """8-bit fake quantization with a moving-average range, as TFLite's int8 tensors see it.

    Args:
        momentum: weight of the old range in the moving average of each batch's min and max.
    """

    def __init__(self, momentum=0.95, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.calibrating = False  # quantize_model sets it while it measures first ranges

    def build(self, input_shape):
        zeros = keras.initializers.Zeros()
        self.range_min = self.add_weight(shape=(), initializer=zeros, trainable=False,
                                         name="range_min")
        self.range_max = self.add_weight(shape=(), initializer=zeros, trainable=False,
                                         name="range_max")
        self.seen = self.add_weight(shape=(), initializer=zeros, trainable=False, name="seen")

    def call(self, inputs, training=None):
        if training or self.calibrating:
            low = tf.reduce_min(inputs)
            high = tf.reduce_max(inputs)
            keep = tf.where(self.seen > 0, self.momentum, 0.0)  # the first batch sets it
            self.range_min.assign(keep * self.range_min + (1.0 - keep) * low)
            self.range_max.assign(keep * self.range_max + (1.0 - keep) * high)
            self.seen.assign(self.seen + 1.0)
        # An int8 range always holds 0 (zero padding must be exact).
        low = tf.minimum(self.range_min, 0.0)
        high = tf.maximum(self.range_max, low + 1e-6)
        return tf.quantization.fake_quant_with_min_max_vars(inputs, low, high, num_bits=8,
                                                            narrow_range=False)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


def quantize_model(model, representative_data, *, num_calibration_samples=200, momentum=0.95):
    """The student with fake quantization, sharing its layers and weights.

    Args:
        model: a functional tfkd student (raw pixels in, logits out).
        representative_data: training images (as `tfkd.export.to_tflite` takes them): the
            fake-quant ranges start from their min and max.
        num_calibration_samples: images used for those first ranges.
        momentum: see `FakeQuant`.

    Returns:
        A functional `keras.Model` named "<name>_qat": train it with `fit` or as a Distiller's
        student, then export it with `tfkd.export.to_tflite(..., quantization="int8")`.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"quantize_model needs a functional keras.Model (a tfkd zoo model, or "
                         f"keras.Model(inputs, outputs)); got {type(model).__name__}")
    image_shape = check_image_model(model)
    consumers = _consumers(model)
    added = {}

    def operation_fn(operation):
        if not _needs_fake_quant(operation, consumers.get(id(operation), [])):
            return operation

        def call(*args, **kwargs):
            outputs = operation(*args, **kwargs)
            return tree.map_structure(lambda t: _fake_quant(t, operation, added, momentum),
                                      outputs)
        return call

    inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype,
                         name=model.inputs[0].name)
    outputs = model._run_through_graph([inputs], operation_fn=operation_fn)  # noqa: SLF001
    qat = keras.Model(inputs, outputs, name=f"{model.name}_qat")
    _calibrate(qat, calibration_images(representative_data, image_shape,
                                       num_calibration_samples))
    return qat


def fake_quant_layers(model):
    """The `FakeQuant` layers of a model from `quantize_model`."""
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


def _fake_quant(tensor, operation, added, momentum):
    if not keras.backend.is_float_dtype(tensor.dtype):
        return tensor
    name = f"{operation.name}_fq{'' if operation.name not in added else len(added)}"
    layer = FakeQuant(momentum=momentum, name=name)
    added[operation.name] = layer
    return layer(tensor)


def _consumers(model):
    """id(operation) -> the operations that read its outputs."""
    producer = {}
    for nodes in model._nodes_by_depth.values():  # noqa: SLF001
        for node in nodes:
            for tensor in node.outputs:
                producer[id(tensor)] = node.operation
    found = {}
    for nodes in model._nodes_by_depth.values():  # noqa: SLF001
        for node in nodes:
            for tensor in node.input_tensors:
                source = producer.get(id(tensor))
                if source is not None:
                    found.setdefault(id(source), []).append(node.operation)
    return found


def _needs_fake_quant(operation, consumers):
    if not isinstance(operation, _QUANTIZED_OUTPUTS):
        return False
    if not consumers:
        return True  # a model output: the int8 output tensor
    if isinstance(operation, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                              keras.layers.Dense)) and all(
            isinstance(c, keras.layers.BatchNormalization) for c in consumers):
        return False  # BN is folded into these weights: no tensor in between
    return not all(_fused_activation(c) for c in consumers)


def _fused_activation(operation):
    if isinstance(operation, keras.layers.ReLU):
        return (not operation.negative_slope and not operation.threshold
                and operation.max_value in (None, 6.0, 6))
    if isinstance(operation, keras.layers.Activation):
        return getattr(operation.activation, "__name__", "") in _FUSED_ACTIVATIONS
    return False


def _calibrate(model, images, batch_size=32):
    layers = fake_quant_layers(model)
    for layer in layers:
        layer.calibrating = True
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size], training=False)
    finally:
        for layer in layers:
            layer.calibrating = False
