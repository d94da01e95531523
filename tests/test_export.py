"""tfkd.export: real conversions, read back from the .tflite, evaluated with LiteRT."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tfkd
from tfkd import export, tflite_file
from tests.helpers import tiny_cnn

SIZE = 16


@pytest.fixture(scope="module")
def data():
    """Real Fashion-MNIST at 16x16: 2,000 training and 1,000 test images."""
    train = tfkd.data.load("fashion_mnist", "train", image_size=SIZE, batch_size=64, limit=2000,
                           seed=0)
    test = tfkd.data.load("fashion_mnist", "test", image_size=SIZE, batch_size=250, limit=1000)
    return train, test


@pytest.fixture(scope="module")
def trained(data):
    """A small CNN trained for two epochs (about 0.7 test accuracy)."""
    keras.utils.set_random_seed(0)
    model = tfkd.create_model("convnet_s", image_size=SIZE, num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(data[0], epochs=2, verbose=0, shuffle=False)  # tfkd.data shuffled it
    return model


def _calibration(n=32, size=SIZE):
    return np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("quantization, in_dtype, out_dtype", [
    ("int8", "int8", "int8"), ("uint8", "uint8", "uint8"), ("float16", "float32", "float32"),
    ("dynamic", "float32", "float32"), ("float32", "float32", "float32")])
def test_every_mode_writes_what_it_promises(tmp_path, trained, quantization, in_dtype, out_dtype):
    path = tmp_path / f"m_{quantization}.tflite"
    result = export.to_tflite(trained, str(path), quantization=quantization,
                              representative_data=_calibration())
    assert result.path == str(path) and result.size_bytes == os.path.getsize(path)
    assert (result.input_dtype, result.output_dtype) == (in_dtype, out_dtype)
    assert result.inputs[0].shape == (1, SIZE, SIZE, 3)  # static batch of one
    assert result.outputs[0].shape == (1, 10)
    if quantization in ("int8", "uint8"):
        # Raw 0..255 pixels map onto the 256 integer levels: scale ~1, zero point at black.
        assert result.inputs[0].scale == pytest.approx(1.0, rel=0.02)
        assert result.inputs[0].zero_point == (-128 if quantization == "int8" else 0)
        assert result.float_ops == []  # a plain CNN is integer throughout
        assert "DEQUANTIZE" not in result.op_counts
    else:
        assert result.inputs[0].scale is None and "CONV_2D" in result.float_ops
    if quantization == "float16":
        assert result.op_counts["DEQUANTIZE"] >= 3  # float16 weights widened at load
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_sizes_shrink_with_quantization(tmp_path):
    model = tfkd.create_model("convnet_m", image_size=SIZE, num_classes=10)  # 290k weights
    sizes = {q: export.to_tflite(model, str(tmp_path / f"{q}.tflite"), quantization=q,
                                 representative_data=_calibration(8)).size_bytes
             for q in ("int8", "float16", "float32")}
    assert sizes["float32"] > 1.8 * sizes["float16"] and sizes["float32"] > 3 * sizes["int8"]


def _live_bytes_by_brute_force(path):
    """Peak activation bytes from the interpreter's own view of the graph, op by op."""
    # No delegate: XNNPACK would replace the ops with one delegate op.
    interpreter, _, _ = tflite_file.load_interpreter(path, delegate="none")
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the op list, in execution order
    inputs = [d["index"] for d in interpreter.get_input_details()]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    written = {i: k for k, op in enumerate(ops) for i in op["outputs"]}
    written.update({i: -1 for i in inputs})
    peak = 0
    for k in range(-1, len(ops) + 1):
        live = 0
        for i, born in written.items():
            readers = [j for j, op in enumerate(ops) if i in op["inputs"]]
            dies = len(ops) if i in outputs else max(readers + [born])
            if born <= k <= dies:
                live += int(np.prod(tensors[i]["shape"])) * np.dtype(tensors[i]["dtype"]).itemsize
        peak = max(peak, live)
    return peak


def test_peak_activation_memory_is_read_from_the_file_and_grows_with_the_resolution(tmp_path):
    peaks = {}
    for size in (16, 32):
        model = tfkd.create_model("convnet_s", image_size=size, num_classes=10)
        for quantization in ("int8", "float32"):
            path = str(tmp_path / f"{size}_{quantization}.tflite")
            result = export.to_tflite(model, path, quantization=quantization,
                                      representative_data=_calibration(4, size))
            assert result.peak_activation_bytes == _live_bytes_by_brute_force(path)
            peaks[size, quantization] = result.peak_activation_bytes
    # The first two convolutions' outputs (16x16x16 each, int8) are alive at once.
    assert peaks[16, "int8"] == 2 * 16 * 16 * 16
    # Four bytes a value instead of one; four times the pixels at twice the side.
    assert peaks[16, "float32"] == 4 * peaks[16, "int8"]
    assert 3.5 < peaks[32, "int8"] / peaks[16, "int8"] <= 4.0


def test_layer_norm_leaves_a_float_op_in_int8(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same")(layers.Rescaling(1 / 255)(inputs))
    x = layers.LayerNormalization()(layers.Reshape((64, 8))(x))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))
    result = export.to_tflite(model, str(tmp_path / "ln.tflite"),
                              representative_data=_calibration(16, 8))
    assert result.float_ops == ["NEG"]
    assert result.op_counts["QUANTIZE"] >= 1 and result.op_counts["DEQUANTIZE"] >= 1


def test_int8_keeps_accuracy_and_agrees_with_keras(tmp_path, trained, data):
    train, test = data
    check = export.export_and_check(trained, str(tmp_path / "s.tflite"), test,
                                    representative_data=train)
    keras_accuracy = trained.evaluate(test, verbose=0)[1]
    assert check.float_accuracy == pytest.approx(keras_accuracy, abs=1e-6)
    assert check.float_accuracy > 0.6  # a real model, so the drop means something
    assert check.drop_points == pytest.approx(
        100 * (check.float_accuracy - check.tflite_accuracy))
    assert abs(check.drop_points) <= 2.0 and check.agreement >= 0.95
    assert check.passed and check.calibrated_on == "representative_data"
    assert check.count == 1000 and check.export.input_dtype == "int8"


def test_float32_tflite_matches_keras_and_resizes_like_the_distiller(tmp_path, trained):
    # A 16px model evaluated on 28px batches: both sides resize the same way.
    test28 = tfkd.data.load("fashion_mnist", "test", image_size=28, batch_size=100, limit=300)
    export.to_tflite(trained, str(tmp_path / "f.tflite"), quantization="float32")
    result = export.evaluate_tflite(str(tmp_path / "f.tflite"), test28, keras_model=trained)
    assert result.count == 300 and result.agreement == 1.0
    assert result.accuracy == result.keras_accuracy


def test_calibrating_on_normalized_images_warns_twice(tmp_path, trained, data):
    """The classic mistake: [0, 1] images calibrate ranges 255x too narrow."""
    normalized = data[0].map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    with pytest.warns(UserWarning, match=r"calibration images lie in \[0, 1\]"), \
            pytest.warns(export.QuantizationDropWarning,
                         match=r"int8 export of .* lost .* points .* Consider "
                               r"quantization='float16' or 'dynamic'"):
        check = export.export_and_check(trained, str(tmp_path / "bad.tflite"), data[1],
                                        representative_data=normalized)
    assert not check.passed and check.drop_points > 10


def test_export_and_check_calibrates_on_the_dataset_when_given_nothing(tmp_path, trained, data):
    check = export.export_and_check(trained, str(tmp_path / "d.tflite"), data[1],
                                    max_drop_points=5.0)
    assert check.calibrated_on == "dataset" and check.max_drop_points == 5.0


def test_an_interrupted_export_leaves_the_old_file_whole(tmp_path, trained, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous model")

    def interrupted(model, tmp, image_shape, options):
        with open(tmp, "wb") as f:
            f.write(b"TFL3 half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.to_tflite(trained, str(path), quantization="float32")
    assert path.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_an_op_tflite_lacks_is_named(tmp_path):
    class Bessel(layers.Layer):
        def call(self, x):
            return tf.math.bessel_i1e(x)

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(Bessel()(inputs))))
    for quantization in ("float32", "int8"):
        with pytest.raises(ValueError, match=r"cannot be expressed with TFLite builtin ops: "
                                             r"unsupported op\(s\) BesselI1e"):
            export.to_tflite(model, str(tmp_path / "b.tflite"), quantization=quantization,
                             representative_data=_calibration(4, 8))
    assert not os.path.exists(tmp_path / "b.tflite")


def test_bad_arguments_say_what_to_do(tmp_path, trained):
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="needs calibration images: pass representative_data="):
        export.to_tflite(trained, path)
    with pytest.raises(ValueError, match="quantization='int4'; choose one of"):
        export.to_tflite(trained, path, quantization="int4")
    with pytest.raises(ValueError, match="must end in '.tflite'"):
        export.to_tflite(trained, str(tmp_path / "m.tfl"), quantization="float32")
    with pytest.raises(TypeError, match=r"export the student: to_tflite\(distiller.student"):
        export.to_tflite(tfkd.Distiller(teacher=tiny_cnn(SIZE, 10), student=trained), path,
                         quantization="float32")
    with pytest.raises(ValueError, match="cannot be combined with full-integer"):
        export.to_tflite(trained, path, representative_data=_calibration(),
                         allow_select_tf_ops=True)
    with pytest.raises(ValueError, match=r"calibration data must be images \(N, H, W, 3\)"):
        export.to_tflite(trained, path, representative_data=np.zeros((4, 16, 16, 1)))
    with pytest.raises(ValueError, match="representative_data yielded no images"):
        export.to_tflite(trained, path, representative_data=lambda: iter([]))
    with pytest.raises(ValueError, match="num_calibration_samples=0; pass at least 1"):
        export.to_tflite(trained, path, representative_data=_calibration(),
                         num_calibration_samples=0)
    assert not os.listdir(tmp_path)


def test_calibration_takes_the_first_n_images_from_any_source():
    images = _calibration(10, 8)
    from_array = export.calibration_images(images, (8, 8, 3), 6)
    np.testing.assert_allclose(from_array, images[:6])
    batched = tf.data.Dataset.from_tensor_slices((images, np.zeros(10))).batch(4)
    np.testing.assert_allclose(export.calibration_images(batched, (8, 8, 3), 6), images[:6])
    generator = lambda: ([image[None]] for image in images)  # noqa: E731 (converter style)
    assert export.calibration_images(generator, (4, 4, 3), 3).shape == (3, 4, 4, 3)


def test_converter_messages_are_read_for_op_names():
    message = ("error: 'tf.BesselI1e' op is neither a custom op nor a flex op\n"
               "Some ops in the model are custom ops\nCustom ops: BesselI1e, Lgamma\n")
    assert export.unsupported_ops(message) == ["BesselI1e", "Lgamma"]
    assert export.unsupported_ops("some other failure") == []


def test_read_info_refuses_files_that_are_not_tflite(tmp_path):
    path = tmp_path / "x.tflite"
    path.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="is not a TFLite flatbuffer"):
        tflite_file.read_info(str(path))


def test_quantize_round_trips_with_the_tensors_parameters():
    info = tflite_file.TensorInfo("x", (1, 4), "int8", scale=0.5, zero_point=-10)
    q = tflite_file.quantize(np.array([0.0, 1.0, 200.0, -100.0]), info)
    assert q.dtype == np.int8 and q.tolist() == [-10, -8, 127, -128]
    np.testing.assert_allclose(tflite_file.dequantize(q, info), [0.0, 1.0, 68.5, -59.0])


def test_a_path_that_cannot_be_written_fails_before_any_work(tmp_path):
    model = tiny_cnn(SIZE, 10)
    calls = []

    def calibration():
        calls.append(1)
        return _calibration()

    folder = tmp_path / "exports.tflite"  # a folder that a user named like the file
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot export to '{folder}': it is a folder; "
                                                f"pass a file path such as '{folder}/student"):
        export.to_tflite(model, str(folder), representative_data=calibration)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=f"cannot export to '{a_file}/deeper/m.tflite': "
                                                 f"{a_file} is a file, not a folder"):
        export.to_tflite(model, str(a_file / "deeper" / "m.tflite"),
                         representative_data=calibration)
    with pytest.raises(OSError, match="cannot export to '/proc/tfkd-test/m.tflite': "):
        export.to_tflite(model, "/proc/tfkd-test/m.tflite", representative_data=calibration)
    assert calls == []  # refused before calibrating or converting
    assert sorted(os.listdir(tmp_path)) == ["exports.tflite", "notes.txt"]  # no temporary file left


def test_an_export_has_the_permissions_of_any_new_file(tmp_path):
    path = tmp_path / "m.tflite"
    export.to_tflite(tiny_cnn(SIZE, 10), str(path), quantization="float32")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


_EXPORT_ONCE = """
import sys
import keras, tfkd
keras.utils.set_random_seed(int(sys.argv[2]))
model = tfkd.create_model("convnet_s", image_size=16, num_classes=10)
tfkd.export.to_tflite(model, sys.argv[1], quantization="float32")
"""


def test_two_exports_to_one_path_at_once_never_collide(tmp_path):
    path = tmp_path / "same.tflite"
    # Each export converts into a file of its own, whether or not the two overlap in time.
    first, second = (export._temporary_file_beside(str(path)) for _ in range(2))
    assert first != second and os.path.dirname(first) == str(tmp_path)
    for tmp in (first, second):
        os.remove(tmp)
    exports = [subprocess.Popen([sys.executable, "-c", _EXPORT_ONCE, str(path), str(seed)],
                                stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for process in exports:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    assert os.listdir(tmp_path) == ["same.tflite"]  # one whole file, no temporary left
    assert tflite_file.read_info(str(path)).inputs[0].shape == (1, 16, 16, 3)
