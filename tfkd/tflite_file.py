"""Reading .tflite files: what is inside (tensors, quantization, ops) and an interpreter to run them.

Shared by `tfkd.export` (checking what was written) and `tfkd.bench` (running any .tflite, also
one produced elsewhere).
"""

import collections
import dataclasses
import importlib
import importlib.metadata
from typing import Optional

import numpy as np

# Ops that only move between integer and float; they are the boundaries of float islands, not
# float computation themselves.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64"}


@dataclasses.dataclass
class TensorInfo:
    """An input or output tensor of a .tflite model.

    `scale` and `zero_point` are the affine quantization parameters (real = scale * (q - zero_point))
    of a quantized tensor, None for a float one.
    """

    name: str
    shape: tuple
    dtype: str
    scale: Optional[float] = None
    zero_point: Optional[int] = None


@dataclasses.dataclass
class ModelInfo:
    """What a .tflite file holds, read from its flatbuffer."""

    inputs: list
    outputs: list
    op_counts: dict
    float_ops: list
    custom_ops: list
    peak_activation_bytes: Optional[int] = None


def _schema():
    # The flatbuffer schema ships with ai-edge-litert, and with TensorFlow under another name.
    for name in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("reading .tflite files needs ai-edge-litert: pip install ai-edge-litert")


def _enum_names(enum_class):
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def read_info(path):
    """Reads the inputs, outputs and ops of the first subgraph of a .tflite file.

    Returns:
        A `ModelInfo`. `float_ops` lists (sorted, unique) the ops that compute on float tensors,
        QUANTIZE/DEQUANTIZE excluded: in a full-integer model these are the ops that stayed in
        float, such as the NEG that LayerNormalization leaves. `peak_activation_bytes` is the
        most activation memory live at once while the ops run in order (see
        `_peak_activation_bytes`).
    """
    schema = _schema()
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier); "
                         "pass a .tflite file written by the TFLite converter")
    model = schema.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    def tensor(i):
        t = graph.Tensors(i)
        q = t.Quantization()
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        return TensorInfo(
            name=t.Name().decode(), shape=tuple(int(d) for d in t.ShapeAsNumpy()),
            dtype=type_names[t.Type()].lower(),
            scale=float(scales[0]) if scales is not None else None,
            zero_point=int(zeros[0]) if zeros is not None and scales is not None else None)

    counts, float_ops, custom_ops = collections.Counter(), set(), set()
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        name = _op_name(model, op, op_names)
        if name == "CUSTOM":
            name = model.OperatorCodes(op.OpcodeIndex()).CustomCode().decode()
            custom_ops.add(name)
        counts[name] += 1
        ids = [int(i) for i in np.concatenate([op.InputsAsNumpy(), op.OutputsAsNumpy()]) if i >= 0]
        if name not in _BOUNDARY_OPS and any(
                type_names[graph.Tensors(i).Type()] in _FLOAT_TYPES for i in ids):
            float_ops.add(name)
    return ModelInfo(
        inputs=[tensor(int(i)) for i in graph.InputsAsNumpy()],
        outputs=[tensor(int(i)) for i in graph.OutputsAsNumpy()],
        op_counts=dict(sorted(counts.items())), float_ops=sorted(float_ops),
        custom_ops=sorted(custom_ops),
        peak_activation_bytes=_peak_activation_bytes(graph, type_names))


def _peak_activation_bytes(graph, type_names):
    """The largest total size of the activations alive at one op, the ops run in file order.

    An activation (a graph input or an op's output; weights are neither) lives from the op
    that writes it to the last op that reads it (graph outputs to the end). This is the memory
    that grows with the input resolution, the lower bound of what the interpreter's arena
    needs: the arena adds alignment and packing slack, and the weights come on top.
    """
    ops = [graph.Operators(k) for k in range(graph.OperatorsLength())]
    born = {int(i): -1 for i in graph.InputsAsNumpy()}
    last = {}
    for k, op in enumerate(ops):
        for i in op.OutputsAsNumpy():
            born.setdefault(int(i), k)
        for i in op.InputsAsNumpy():
            last[int(i)] = k
    for i in graph.OutputsAsNumpy():
        last[int(i)] = len(ops)

    def size(i):
        t = graph.Tensors(i)
        return int(np.prod(t.ShapeAsNumpy(), dtype=np.int64)) * _item_bytes(type_names[t.Type()])

    # Sizes added where each activation is born and taken off after its last reader, shifted
    # by one so that the graph inputs (born at -1) land on index 0.
    change = np.zeros(len(ops) + 3, dtype=np.int64)
    for i, b in born.items():
        if i >= 0:
            change[b + 1] += size(i)
            change[max(last.get(i, b), b) + 2] -= size(i)
    return int(np.cumsum(change).max())


def _item_bytes(type_name):
    """Bytes per element of a TFLite tensor type ("INT8", "FLOAT32", ...): numpy's size for
    the same name, 4 for types numpy lacks (resource and variant handles, strings)."""
    try:
        return np.dtype(type_name.lower()).itemsize
    except TypeError:
        return 4


def _op_name(model, op, op_names):
    """The builtin op type of `op` ("CONV_2D"; "CUSTOM" for custom ops)."""
    code = model.OperatorCodes(op.OpcodeIndex())
    # Builtin codes above 127 live in BuiltinCode(); older files only fill the deprecated one.
    return op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")


def op_outputs(buf):
    """(op type, output tensor names) of every op of the first subgraph of .tflite bytes."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    op_names = _enum_names(schema.BuiltinOperator)
    found = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        name = _op_name(model, op, op_names)
        found.append((name, [graph.Tensors(int(i)).Name().decode()
                             for i in op.OutputsAsNumpy() if i >= 0]))
    return found


def load_interpreter(path, *, num_threads=None, delegate="xnnpack"):
    """A LiteRT interpreter for `path`, with its tensors allocated.

    Tries `ai_edge_litert`, then `tflite_runtime`, then `tf.lite`, the order in which they are
    current.

    Args:
        path: the .tflite file.
        num_threads: CPU threads; None lets the runtime choose.
        delegate: "xnnpack" (the default CPU delegate) or "none" (reference kernels only).

    Returns:
        (interpreter, runtime name, runtime version).
    """
    if delegate not in ("xnnpack", "none"):
        raise ValueError(f"delegate={delegate!r}: the local runtime supports 'xnnpack' or 'none'; "
                         "use the benchmark_model tool or a device target for gpu/nnapi")
    module, runtime = _interpreter_module()
    kwargs = {"model_path": str(path), "num_threads": num_threads}
    if delegate == "none":
        kwargs["experimental_op_resolver_type"] = \
            module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        raise RuntimeError(_explain_load_failure(path, e)) from e
    return interpreter, runtime, runtime_version(runtime)


def _interpreter_module():
    for name, runtime in (("ai_edge_litert.interpreter", "ai_edge_litert"),
                          ("tflite_runtime.interpreter", "tflite_runtime")):
        try:
            return importlib.import_module(name), runtime
        except ImportError:
            continue
    try:
        import tensorflow as tf
        return tf.lite, "tensorflow"
    except ImportError:
        raise ImportError("no TFLite runtime found: pip install ai-edge-litert") from None


def runtime_version(runtime):
    """The installed version of a runtime package, or None."""
    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(
        runtime, runtime)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _explain_load_failure(path, error):
    text = str(error)
    try:
        custom = read_info(path).custom_ops
    except (OSError, ValueError):
        custom = []
    flex = [op for op in custom if op.startswith("Flex")]
    if flex:
        return (f"{path} needs TensorFlow (Select TF / Flex) ops {flex}, which this runtime "
                "lacks; re-export with builtin ops only (tfkd.export.to_tflite does by default) "
                f"or link the Flex delegate. Runtime said: {text}")
    if custom:
        return (f"{path} uses custom ops {custom} that this runtime does not have; register "
                "them with the interpreter or re-export the model with builtin ops only. "
                f"Runtime said: {text}")
    return f"could not load {path}: {text}"


def quantize(values, tensor):
    """Real values -> the stored dtype of `tensor` (a `TensorInfo` or interpreter detail)."""
    dtype, scale, zero = _params(tensor)
    if scale is None:
        return np.asarray(values).astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values, tensor):
    """Stored values of `tensor` -> real float32 values."""
    dtype, scale, zero = _params(tensor)
    if scale is None:
        return np.asarray(values, np.float32)
    return (np.asarray(values, np.float32) - zero) * scale


def _params(tensor):
    """(numpy dtype, scale or None, zero point) from a TensorInfo or an interpreter detail."""
    if isinstance(tensor, TensorInfo):
        dtype, scale, zero = np.dtype(tensor.dtype), tensor.scale, tensor.zero_point
    else:
        dtype = np.dtype(tensor["dtype"])
        scale, zero = tensor["quantization"]
    if not np.issubdtype(dtype, np.integer) or not scale:
        return dtype, None, 0
    return dtype, float(scale), int(zero)
