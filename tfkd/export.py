"""Export to TFLite, evaluate the .tflite, and check what quantization cost.

    result = tfkd.export.to_tflite(student, "student.tflite", representative_data=train)
    check = tfkd.export.export_and_check(student, "student.tflite", test,
                                         representative_data=train)
    check.drop_points   # float Keras accuracy minus int8 TFLite accuracy, in points

Models take raw pixels (0..255), so an int8 or uint8 model takes camera pixels as they are.
"""

import dataclasses
import os
import re
import time
import uuid
import warnings
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfkd import quantization as quantization_tools
from tfkd import tflite_file
from tfkd.distiller import resize_images

QUANTIZATIONS = ("int8", "uint8", "float16", "dynamic", "float32")
_FULL_INTEGER = {"int8": tf.int8, "uint8": tf.uint8}


class QuantizationDropWarning(UserWarning):
    """The exported model lost more accuracy than allowed."""


@dataclasses.dataclass
class ExportResult:
    """What `to_tflite` wrote, read back from the file itself.

    Attributes:
        path: the .tflite file.
        size_bytes: its size.
        quantization: the mode asked for (one of QUANTIZATIONS).
        inputs, outputs: `tfkd.tflite_file.TensorInfo` per tensor: name, shape, dtype and, for
            quantized tensors, scale and zero point.
        float_ops: ops computing in float (in an int8 model: those that stayed in float).
        op_counts: how often each op occurs.
        seconds: conversion time.
        kept_float: what `keep_float` kept in float, resolved: {"ops": [op types],
            "tensors": [tensor names]}; empty for a plain export.
        peak_activation_bytes: the most activation memory live at once when the model runs
            (`tfkd.tflite_file.ModelInfo`): what grows with the input resolution.
    """

    path: str
    size_bytes: int
    quantization: str
    inputs: list
    outputs: list
    float_ops: list
    op_counts: dict
    seconds: float
    kept_float: dict = dataclasses.field(default_factory=dict)
    peak_activation_bytes: Optional[int] = None

    @property
    def input_dtype(self):
        return self.inputs[0].dtype

    @property
    def output_dtype(self):
        return self.outputs[0].dtype

    def to_dict(self):
        return dataclasses.asdict(self)


def to_tflite(model, path, *, quantization="int8", representative_data=None,
              num_calibration_samples=200, allow_select_tf_ops=False, keep_float=None):
    """Converts a Keras image classifier to a .tflite file with a static batch of 1.

    Args:
        model: a `keras.Model` taking one image input of fixed size (a tfkd student, say).
        path: where to write; must end in ".tflite". Written atomically: an interrupted export
            never leaves a truncated file under this name.
        quantization: "int8" (full integer, int8 input and output), "uint8" (full integer,
            uint8 input and output: camera pixels straight in), "float16" (float16 weights),
            "dynamic" (int8 weights, float activations) or "float32".
        representative_data: calibration images for int8/uint8, raw pixels 0..255: a
            tf.data.Dataset (of images or (images, labels), batched or not), a numpy array, or a
            callable returning an iterable of either. Use training images, not test images.
        num_calibration_samples: images taken from `representative_data`.
        allow_select_tf_ops: let float models fall back to TensorFlow (Flex) ops, which edge
            runtimes and the benchmark tool lack. Full-integer modes never allow them.
        keep_float: for int8/uint8, what stays in float while the rest is quantized (the
            input and output stay integer): TFLite op types ("SOFTMAX", "BATCH_MATMUL"), tensor
            names (`tfkd.quantization.diagnose(...).worst(n)`) or Keras layer names. The
            result's `kept_float` records them.

    Returns:
        An `ExportResult`.
    """
    image_shape = _check_export_args(model, path, quantization, representative_data,
                                     num_calibration_samples, allow_select_tf_ops, keep_float)
    start = time.perf_counter()
    tmp = _temporary_file_beside(path)  # before any work: a bad path fails in a moment
    kept = {}
    try:
        options = _converter_options(quantization, allow_select_tf_ops)
        if quantization in _FULL_INTEGER:
            images = calibration_images(representative_data, image_shape,
                                        num_calibration_samples)
            options["representative_dataset"] = lambda: ([image[None]] for image in images)
        if keep_float:
            buf, kept = quantization_tools.selective_tflite(
                model, image_shape, images, keep_float, _FULL_INTEGER[quantization])
            with open(tmp, "wb") as f:
                f.write(buf)
        else:
            _convert(model, tmp, image_shape, options)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    info = tflite_file.read_info(path)
    return ExportResult(path=str(path), size_bytes=os.path.getsize(path),
                        quantization=quantization, inputs=info.inputs, outputs=info.outputs,
                        float_ops=info.float_ops, op_counts=info.op_counts,
                        seconds=time.perf_counter() - start, kept_float=kept,
                        peak_activation_bytes=info.peak_activation_bytes)


def _temporary_file_beside(path):
    """A new, empty, uniquely named file in `path`'s folder, to convert into and then rename.

    Checks on the way that `path` can be written: it is not a folder, and its folder exists (or
    can be made) and takes a new file. Errors name the user's path, never the hidden name.
    A unique name (Keras insists on the .tflite suffix, so it keeps it) lets two exports to
    the same path run at once: the last rename wins, and neither writes into the other's file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot export to {path!r}: it is a folder; pass a file path "
                                f"such as {os.path.join(path, 'student.tflite')!r}")
    directory, name = os.path.split(os.path.abspath(path))
    # Created with mode 0666 and O_EXCL, so the export gets the permissions of any new file
    # (the umask applies; mkstemp would make it private) and never opens another's file.
    tmp = os.path.join(directory, f".{name[:-len('.tflite')]}.{os.getpid()}-"
                                  f"{uuid.uuid4().hex[:8]}.tmp.tflite")
    try:
        os.makedirs(directory, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot export to {path!r}: {_file_on_the_way(directory)} is "
                                 "a file, not a folder; choose another path") from None
    except PermissionError:
        raise PermissionError(f"cannot export to {path!r}: no permission to write in "
                              f"{directory}; choose a folder you can write to") from None
    except OSError as e:
        raise OSError(f"cannot export to {path!r}: {e.strerror} in {directory}; choose "
                      "another folder") from None
    return tmp


def _file_on_the_way(directory):
    """The nearest existing ancestor of `directory` (a file where a folder should be)."""
    while directory and not os.path.exists(directory):
        directory = os.path.dirname(directory)
    return directory


def check_image_model(model):
    """The (H, W, C) of a Keras model with one image input of fixed size, or an error that
    says what to pass instead."""
    from tfkd.distiller import Distiller
    if isinstance(model, Distiller):
        raise TypeError("to_tflite got a Distiller; export the student: "
                        "to_tflite(distiller.student, ...)")
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_tflite needs a keras.Model, got {type(model).__name__}")
    try:
        inputs = model.inputs  # a subclassed model has none
    except AttributeError:
        inputs = None
    shapes = [tuple(i.shape) for i in inputs] if inputs else []
    if len(shapes) != 1 or len(shapes[0]) != 4 or None in shapes[0][1:]:
        raise ValueError(f"to_tflite exports models with one image input of fixed size "
                         f"(batch, height, width, channels); this model's inputs are {shapes}")
    return shapes[0][1:]


def _check_export_args(model, path, quantization, data, num_samples, allow_select_tf_ops,
                       keep_float):
    """Validates `to_tflite`'s arguments; returns the model's (H, W, C)."""
    image_shape = check_image_model(model)
    if keep_float is not None and (not isinstance(keep_float, (list, tuple)) or not all(
            isinstance(k, str) for k in keep_float)):
        raise ValueError(f"keep_float must be a list of op types, tensor or layer names, got "
                         f"{keep_float!r}; e.g. keep_float=['SOFTMAX']")
    if keep_float and quantization not in _FULL_INTEGER:
        raise ValueError(f"keep_float applies to full-integer exports (int8, uint8); "
                         f"quantization={quantization!r} already keeps activations in float")
    if not str(path).endswith(".tflite"):
        raise ValueError(f"path {str(path)!r} must end in '.tflite'")
    if quantization == "auto":
        raise ValueError("quantization='auto' chooses among exports by evaluating and timing "
                         "them: call tfkd.export.export_and_check(model, path, test_data, "
                         "quantization='auto', representative_data=...)")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r}; choose one of {QUANTIZATIONS}")
    if quantization in _FULL_INTEGER and data is None:
        raise ValueError(
            f"quantization={quantization!r} needs calibration images: pass "
            "representative_data= (a few hundred training images, raw pixels 0..255), or choose "
            "quantization='float16' or 'dynamic', which need none")
    if quantization in _FULL_INTEGER and allow_select_tf_ops:
        raise ValueError("allow_select_tf_ops=True cannot be combined with full-integer "
                         f"quantization={quantization!r}: Select TF ops run in float")
    if int(num_samples) < 1:
        raise ValueError(f"num_calibration_samples={num_samples}; pass at least 1 (200 is usual)")
    return image_shape


def _converter_options(quantization, allow_select_tf_ops):
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in _FULL_INTEGER:
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif allow_select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    # Keras's exporter allows SELECT_TF_OPS unless target_spec says otherwise.
    options = {"target_spec": {"supported_ops": ops}}
    if quantization != "float32":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    if quantization in _FULL_INTEGER:
        options["inference_input_type"] = _FULL_INTEGER[quantization]
        options["inference_output_type"] = _FULL_INTEGER[quantization]
    return options


def _convert(model, path, image_shape, options):
    signature = [tf.TensorSpec((1, *image_shape), tf.float32)]
    try:
        model.export(path, format="litert", input_signature=signature, verbose=False, **options)
    except Exception as e:  # The converter raises ConverterError and others, all with op text.
        ops = unsupported_ops(str(e))
        if not ops:
            raise
        raise ValueError(
            f"{model.name} cannot be expressed with TFLite builtin ops: unsupported op(s) "
            f"{', '.join(ops)}. Replace the layer that uses them, or for a float export pass "
            "allow_select_tf_ops=True (the model then needs the Flex delegate).") from e


def unsupported_ops(message):
    """TensorFlow op names a converter error message says TFLite cannot run, in order."""
    names = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    for line in re.findall(r"(?:Custom|Flex) ops: ([^\n]+)", message):
        names += [n.strip() for n in line.split(",")]
    names += re.findall(r"'tf\.(\w+)' op is not supported", message)
    return list(dict.fromkeys(n for n in names if n))


def calibration_images(data, image_shape, count):
    """Up to `count` float32 images of `image_shape` (H, W, C) from `data`, in order.

    `data` is what `to_tflite` accepts as `representative_data`. Images are resized as the
    Distiller resizes them, so calibration sees what training saw.
    """
    items = data() if callable(data) and not isinstance(data, tf.data.Dataset) else data
    if isinstance(items, np.ndarray):
        items = [items]
    images, total = [], 0
    for item in items:
        if isinstance(item, (tuple, list)):
            item = item[0]  # (images, labels) or the converter's [input] convention
        batch = tf.convert_to_tensor(item)
        if batch.shape.rank == 3:
            batch = batch[None]
        if batch.shape.rank != 4 or batch.shape[-1] != image_shape[-1]:
            raise ValueError(f"calibration data must be images (N, H, W, {image_shape[-1]}) "
                             f"or (H, W, {image_shape[-1]}); got shape {tuple(batch.shape)}")
        batch = resize_images(batch[: count - total], image_shape[:2]).numpy()
        images.append(batch)
        total += len(batch)
        if total >= count:
            break
    if not total:
        raise ValueError("representative_data yielded no images; pass a non-empty dataset")
    images = np.concatenate(images)
    if images.max() <= 1.0:
        warnings.warn("calibration images lie in [0, 1]; tfkd models take raw pixels 0..255, so "
                      "the int8 ranges will be wrong. Pass unnormalized images.", stacklevel=3)
    return images


@dataclasses.dataclass
class EvalResult:
    """Accuracy of a .tflite model, and how it compares with a Keras model on the same images."""

    accuracy: float
    count: int
    seconds: float
    keras_accuracy: float = None
    agreement: float = None

    def to_dict(self):
        return dataclasses.asdict(self)


def evaluate_tflite(path, dataset, *, keras_model=None, num_threads=None):
    """Top-1 accuracy of a .tflite classifier on `dataset`, one image per invoke.

    Args:
        path: the .tflite file (any quantization; its own parameters quantize the inputs and
            dequantize the outputs).
        dataset: batches of (images, labels), raw pixels; resized to the model's input size as
            the Distiller does. Labels are class indices (or one-hot).
        keras_model: optional; when given, also its accuracy and the fraction of images on which
            its top-1 equals the .tflite's.
        num_threads: interpreter threads; None uses every CPU.

    Returns:
        An `EvalResult`.
    """
    start = time.perf_counter()
    interpreter, _, _ = tflite_file.load_interpreter(path, num_threads=num_threads or os.cpu_count())
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    correct = keras_correct = agree = count = 0
    for images, labels in dataset:
        labels = np.asarray(labels)
        labels = labels.argmax(-1) if labels.ndim == 2 else labels.reshape(-1)
        batch = resize_images(images, inp["shape"][1:3]).numpy()
        predictions = _predict_each(interpreter, inp, out, batch)
        correct += int((predictions == labels).sum())
        count += len(labels)
        if keras_model is not None:
            size = keras_model.inputs[0].shape[1:3]
            keras_top1 = np.asarray(keras_model(resize_images(images, size), training=False))
            keras_top1 = keras_top1.argmax(-1)
            keras_correct += int((keras_top1 == labels).sum())
            agree += int((keras_top1 == predictions).sum())
    if not count:
        raise ValueError("the evaluation dataset is empty")
    result = EvalResult(accuracy=correct / count, count=count,
                        seconds=time.perf_counter() - start)
    if keras_model is not None:
        result.keras_accuracy, result.agreement = keras_correct / count, agree / count
    return result


def _predict_each(interpreter, inp, out, batch):
    quantized = tflite_file.quantize(batch, inp)
    top1 = np.empty(len(batch), np.int64)
    for i in range(len(batch)):
        interpreter.set_tensor(inp["index"], quantized[i: i + 1])
        interpreter.invoke()
        top1[i] = tflite_file.dequantize(interpreter.get_tensor(out["index"]), out).argmax()
    return top1


@dataclasses.dataclass
class CheckResult:
    """`export_and_check`'s record: the export, both accuracies and the drop between them."""

    export: ExportResult
    float_accuracy: float
    tflite_accuracy: float
    agreement: float
    drop_points: float
    max_drop_points: float
    passed: bool
    calibrated_on: str
    count: int
    eval_seconds: float
    auto: dict = None

    def to_dict(self):
        return dataclasses.asdict(self)


def export_and_check(model, path, dataset, *, quantization="int8", representative_data=None,
                     num_calibration_samples=200, max_drop_points=1.0, num_threads=None,
                     keep_float=None, target="local", threads=1, delegate="xnnpack",
                     bench_options=None, warn=True):
    """Exports `model`, then evaluates Keras float vs the .tflite on `dataset`.

    When the .tflite loses more than `max_drop_points` points of top-1 accuracy, a
    `QuantizationDropWarning` names the alternatives and the result records `passed=False`.

    With quantization="auto" it chooses (`tfkd.auto_export`): full int8, int8 with its worst
    tensors kept in float when int8 loses too much, dynamic-range, float16 and float32 are each
    exported, evaluated and timed on `target`; the fastest within `max_drop_points` is written
    to `path`, and `result.auto` lists every candidate and says why the winner won.

    Args:
        model, path, quantization, num_calibration_samples, keep_float: as for `to_tflite`
            (quantization may also be "auto").
        dataset: evaluation batches of (images, labels).
        representative_data: calibration images; None calibrates on `dataset` itself (recorded
            in `calibrated_on`). Pass training images to keep calibration and evaluation apart.
        max_drop_points: accuracy points (0..100) the export may lose.
        num_threads: interpreter threads for the evaluation.
        target, threads, delegate: where "auto" times the candidates (`tfkd.bench.run`).
        bench_options: further `tfkd.bench.run` keywords for that target, e.g. an ssh board's
            {"config_file": ..., "python": ...} or a phone's {"benchmark_binary": ...}.
        warn: False to leave out the QuantizationDropWarning (the result still says).

    Returns:
        A `CheckResult`.
    """
    if quantization == "auto":
        from tfkd import auto_export  # noqa: PLC0415 - it calls back into this module
        if keep_float:
            raise ValueError("keep_float does not combine with quantization='auto', which "
                             "chooses what to keep in float itself")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"quantization='auto' times each candidate at one thread count; "
                             f"pass threads=N (an int >= 1), got threads={threads!r}")
        check, auto = auto_export.choose(
            model, path, dataset, representative_data=representative_data,
            num_calibration_samples=num_calibration_samples, max_drop_points=max_drop_points,
            num_threads=num_threads, target=target, threads=threads, delegate=delegate,
            bench_options=bench_options)
        check.auto = auto
        return check
    calibrated_on = "representative_data" if representative_data is not None else "dataset"
    exported = to_tflite(model, path, quantization=quantization,
                         representative_data=dataset if representative_data is None
                         else representative_data,
                         num_calibration_samples=num_calibration_samples, keep_float=keep_float)
    evaluated = evaluate_tflite(path, dataset, keras_model=model, num_threads=num_threads)
    drop = 100.0 * (evaluated.keras_accuracy - evaluated.accuracy)
    passed = drop <= max_drop_points
    if not passed and warn:
        alternatives = "quantization='float16' or 'dynamic' (dynamic-range)"
        if quantization not in _FULL_INTEGER:
            alternatives = "quantization='float32'"
        warnings.warn(
            f"{quantization} export of {model.name} lost {drop:.2f} points of accuracy "
            f"({100 * evaluated.keras_accuracy:.2f}% float -> {100 * evaluated.accuracy:.2f}%), "
            f"more than max_drop_points={max_drop_points}. Consider {alternatives}, "
            "quantization='auto' (which keeps the worst layers in float or picks another "
            "export, timed on your target), more or more representative calibration images.",
            QuantizationDropWarning, stacklevel=2)
    return CheckResult(export=exported, float_accuracy=evaluated.keras_accuracy,
                       tflite_accuracy=evaluated.accuracy, agreement=evaluated.agreement,
                       drop_points=drop, max_drop_points=max_drop_points, passed=passed,
                       calibrated_on=calibrated_on, count=evaluated.count,
                       eval_seconds=evaluated.seconds)
