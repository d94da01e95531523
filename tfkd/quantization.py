"""Where full-integer quantization goes wrong, and exports that keep those parts in float.

    diagnosis = tfkd.quantization.diagnose(student, test, representative_data=train)
    diagnosis.layers[:5]          # worst first: op, tensor, Keras layer, error
    diagnosis.drop_points         # float Keras accuracy minus int8 TFLite accuracy
    tfkd.export.to_tflite(student, "s.tflite", representative_data=train,
                          keep_float=diagnosis.worst(3))   # or op types: ["SOFTMAX"]

Both run on TensorFlow's own tools: `tf.lite.experimental.QuantizationDebugger` measures each
quantized tensor against its float value on real images, and the converter's quantizer
(`mlir_quantize`, the one `TFLiteConverter` and the debugger call) leaves denylisted ops or
tensors in float while the model keeps int8 (or uint8) input and output. LiteRT's
ai-edge-quantizer does selective and int16 quantization too, but only from a float .tflite to a
model with float input and output; tfkd's int8 files take camera pixels as int8, so the
TensorFlow path is the one that keeps that contract.
"""

import contextlib
import csv
import dataclasses
import io
import os
import re
import tempfile
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as tflite_convert

from tfkd import tflite_file

# Images the debugger compares float and int8 activations on (each is one interpreter run).
DEBUG_SAMPLES = 64


@dataclasses.dataclass
class LayerError:
    """How far one quantized tensor is from its float value.

    Attributes:
        op: the TFLite op that outputs it ("FULLY_CONNECTED").
        tensor: its name, as `keep_float` takes it.
        layer: the Keras layer it comes from ("" when the name does not say).
        error: RMSE of the dequantized int8 tensor against the float one, divided by the
            tensor's quantized range (255 x scale): 1/255 is one quantization step.
        rmse, max_abs_error, scale: the debugger's raw numbers.
    """

    op: str
    tensor: str
    layer: str
    error: float
    rmse: float
    max_abs_error: float
    scale: float


@dataclasses.dataclass
class Diagnosis:
    """What full-integer quantization does to a model, layer by layer and end to end."""

    layers: list
    float_accuracy: float
    int8_accuracy: float
    drop_points: float
    count: int

    def worst(self, n):
        """The tensor names of the `n` worst layers, for `to_tflite(keep_float=...)`."""
        return [layer.tensor for layer in self.layers[:n]]

    def to_rows(self):
        """One dict per tensor, worst first (for a CSV or a report)."""
        return [dataclasses.asdict(layer) for layer in self.layers]


def diagnose(model, dataset, *, representative_data, num_calibration_samples=200,
             debug_samples=DEBUG_SAMPLES):
    """Per-layer int8 error on real images, worst first, and the end-to-end accuracy drop.

    Args:
        model: a Keras image classifier taking raw pixels (a tfkd student).
        dataset: batches of (images, labels): the debugger compares activations on its first
            `debug_samples` images, and the accuracies are measured on all of it.
        representative_data: calibration images, as `tfkd.export.to_tflite` takes them.

    Returns:
        A `Diagnosis`.
    """
    from tfkd import export  # noqa: PLC0415 - export imports this module

    image_shape = export.check_image_model(model)
    calibration = export.calibration_images(representative_data, image_shape,
                                            num_calibration_samples)
    debug = export.calibration_images(dataset, image_shape, debug_samples)
    with _debugger(model, image_shape, calibration, debug) as debugger:
        debugger.run()
        text = io.StringIO()
        debugger.layer_statistics_dump(text)
        quantized = quantize(debugger, tf.int8)
    layers = sorted(_layer_errors(text.getvalue(), model), key=lambda e: -e.error)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "int8.tflite")
        with open(path, "wb") as f:
            f.write(quantized)
        check = export.evaluate_tflite(path, dataset, keras_model=model)
    return Diagnosis(layers=layers, float_accuracy=check.keras_accuracy,
                     int8_accuracy=check.accuracy,
                     drop_points=100.0 * (check.keras_accuracy - check.accuracy),
                     count=check.count)


@contextlib.contextmanager
def _debugger(model, image_shape, calibration, debug, options=None):
    """A QuantizationDebugger on `model`, calibrated with `calibration` images."""
    with tempfile.TemporaryDirectory() as tmp:
        # The debugger needs a TFLiteConverter; a SavedModel keeps every variable constant
        # (a concrete function would leave Dropout's seed state as a variable to read).
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec((1, *image_shape), tf.float32)])
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        with warnings.catch_warnings():
            # The debugger runs TensorFlow's own (deprecated) tf.lite.Interpreter inside.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            yield tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([image[None]] for image in debug),
                debug_options=options)


def quantize(debugger, io_type, denylisted_ops=(), denylisted_nodes=()):
    """The debugger's calibrated model, fully quantized with `io_type` (tf.int8 or tf.uint8)
    input and output, the denylisted op types and tensors left in float."""
    return tflite_convert.mlir_quantize(
        debugger.calibrated_model, fully_quantize=True, input_data_type=io_type,
        output_data_type=io_type, denylisted_ops=list(denylisted_ops),
        denylisted_nodes=list(denylisted_nodes))


def selective_tflite(model, image_shape, calibration, keep_float, io_type):
    """(.tflite bytes, resolved) of a full-integer export that keeps `keep_float` in float.

    Args:
        keep_float: TFLite op types ("SOFTMAX"), tensor names (`Diagnosis.worst`) or Keras
            layer names (every quantized tensor the layer makes).

    Returns:
        The model, and {"ops": [...], "tensors": [...]}: what was kept in float.
    """
    with _debugger(model, image_shape, calibration, calibration[:1]) as debugger:
        tensors = _quantized_tensors(debugger, model)
        ops, nodes = _resolve(keep_float, tensors, model)
        return quantize(debugger, io_type, ops, nodes), {"ops": ops, "tensors": nodes}


def _quantized_tensors(debugger, model):
    """(op, tensor, layer) of every op output in the debugger's calibrated model."""
    layers = {layer.name for layer in model.layers}
    return [(op, name, _layer_of(name, layers))
            for op, names in tflite_file.op_outputs(debugger.calibrated_model)
            for name in names]


def _resolve(keep_float, tensors, model):
    ops_known = {op for op, _, _ in tensors}
    by_tensor = {name for _, name, _ in tensors}
    ops, nodes = [], []
    for item in keep_float:
        if item in ops_known:
            ops.append(item)
        elif item in by_tensor:
            nodes.append(item)
        elif any(layer == item for _, _, layer in tensors):
            nodes += [name for _, name, layer in tensors if layer == item]
        else:
            layers = sorted({layer for _, _, layer in tensors if layer})
            raise ValueError(
                f"keep_float: {item!r} is not an op type, tensor or layer of {model.name}'s "
                f"quantized graph; op types: {sorted(ops_known)}; layers: {layers} "
                "(tfkd.quantization.diagnose lists the tensors, worst first)")
    return list(dict.fromkeys(ops)), list(dict.fromkeys(nodes))


def _layer_errors(text, model):
    layers = {layer.name for layer in model.layers}
    errors = []
    for row in csv.DictReader(io.StringIO(text)):
        scale = float(row["scale"] or 0.0)
        rmse = float(np.sqrt(max(float(row["mean_squared_error"]), 0.0)))
        errors.append(LayerError(
            op=row["op_name"], tensor=row["tensor_name"],
            layer=_layer_of(row["tensor_name"], layers),
            error=rmse / (255.0 * scale) if scale > 0 else 0.0, rmse=rmse,
            max_abs_error=float(row["max_abs_error"]), scale=scale))
    return errors


def _layer_of(tensor_name, layers):
    """The Keras layer a converted tensor name points at: "model_1/block0_norm1_1/moments/mean"
    -> "block0_norm1" (Keras suffixes names it traces with _1), or ""."""
    for part in tensor_name.split("/")[1:]:
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in layers:
                return candidate
    return ""
