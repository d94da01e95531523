"""ImageNet weights for the keras.applications families, offline: backbone files in the format
Keras downloads, written here from randomly initialized backbones, loaded by tfkd's real code."""

import hashlib
import os
import time
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.applications import efficientnet as keras_efficientnet
from keras.src.applications import mobilenet_v3 as keras_mobilenet_v3

import tfkd
from tests.helpers import batch, write_keras_backbone_file

# (tfkd name, keras.applications builder, the file Keras downloads for it)
CASES = [
    ("efficientnet_b0", keras.applications.EfficientNetB0, "efficientnetb0_notop.h5"),
    ("efficientnetv2_b0", keras.applications.EfficientNetV2B0, "efficientnetv2-b0_notop.h5"),
    ("mobilenetv3_small", keras.applications.MobileNetV3Small,
     "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network for this test, whatever the machine has: every HTTP(S) request goes to a
    closed local port, and Keras's cache is an empty folder."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


@pytest.mark.parametrize("name, builder, file_name", CASES)
def test_a_backbone_file_loads_with_a_fresh_head(name, builder, file_name, tmp_path):
    path = tmp_path / file_name
    source = write_keras_backbone_file(builder, path, 32)
    model = tfkd.create_model(name, image_size=40, num_classes=7, weights=str(path))
    assert tfkd.models.imagenet_file(name)[0] == file_name  # what Keras would download
    assert model.output_shape == (None, 7) and model.input_shape == (None, 40, 40, 3)
    loaded = [layer for layer in model.layers if layer.weights]
    backbone = [layer for layer in source.layers if layer.weights]
    for src, dst in zip(backbone, loaded):  # every backbone weight is the file's
        for a, b in zip(src.get_weights(), dst.get_weights()):
            if not isinstance(src, keras.layers.Normalization):  # see the EfficientNet test
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: {dst.name}")
    assert all(layer.momentum == tfkd.models.DEFAULT_BN_MOMENTUM for layer in loaded
               if isinstance(layer, keras.layers.BatchNormalization))
    x, _ = batch(40, n=2)
    # Raw pixels in: uint8 and float give the same logits.
    np.testing.assert_allclose(model(x), model(x.astype("float32")), rtol=1e-5, atol=1e-5)


def test_efficientnet_computes_what_keras_imagenet_model_computes(tmp_path):
    """Keras adds a Rescaling layer for weights="imagenet" only; tfkd folds it into the
    Normalization layer. Keras's own model is built on the same file (its download replaced
    by the local file) and must give the same features."""
    path = tmp_path / "efficientnetb0_notop.h5"
    write_keras_backbone_file(keras.applications.EfficientNetB0, path, 32)
    model = tfkd.create_model("efficientnet_b0", image_size=32, num_classes=3, weights=str(path))
    with mock.patch.object(keras_efficientnet.file_utils, "get_file", return_value=str(path)):
        reference = keras.applications.EfficientNetB0(include_top=False, weights="imagenet",
                                                      input_shape=(32, 32, 3), pooling="avg")
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    x = batch(32, n=2)[0].astype("float32")
    np.testing.assert_allclose(features(x), reference(x), rtol=1e-4, atol=1e-6)
    # ... also after a .keras round trip (Normalization rebuilds from its saved weights).
    model.save(tmp_path / "m.keras")
    again = tfkd.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_pretrained_student_distils_exports_and_reloads(tmp_path):
    path = tmp_path / CASES[2][2]
    write_keras_backbone_file(keras.applications.MobileNetV3Small, path, 32)
    student = tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=3,
                                weights=str(path))
    teacher = tfkd.create_model("convnet_s", image_size=16, num_classes=3)
    x, y = batch(32, n=16)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in student.trainable_weights]
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, student.trainable_weights))
    student.save(tmp_path / "s.keras")
    again = tfkd.models.load_model(tmp_path / "s.keras")
    np.testing.assert_allclose(again(x), student(x), rtol=1e-5, atol=1e-5)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    exported = tfkd.export.to_tflite(student, str(tmp_path / "s.tflite"), quantization="int8",
                                     representative_data=data)
    assert exported.inputs[0].dtype == "int8" and os.path.getsize(exported.path) > 0
    checked = tfkd.export.evaluate_tflite(exported.path, data, keras_model=student)
    assert checked.count == 16 and checked.agreement is not None  # LiteRT ran it


def test_imagenet_offline_fails_fast_and_says_where_to_get_the_file(offline):
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        tfkd.create_model("efficientnet_b0", image_size=32, num_classes=3, weights="imagenet")
    assert time.perf_counter() - start < 15
    message = str(err.value)
    for part in ("efficientnetb0_notop.h5",
                 "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
                 "weights='/path/to/efficientnetb0_notop.h5'", str(offline / "models")):
        assert part in message


def test_imagenet_uses_a_file_already_in_keras_cache(offline, tmp_path):
    """A file in Keras's cache with the hash Keras expects loads without any network."""
    name, builder, file_name = CASES[2]
    cache = offline / "models"
    cache.mkdir(parents=True)
    source = write_keras_backbone_file(builder, cache / file_name, 32)
    digest = hashlib.sha256((cache / file_name).read_bytes()).hexdigest()
    key = "small_224_1.0_float"
    hashes = dict(keras_mobilenet_v3.WEIGHTS_HASHES, **{
        key: (keras_mobilenet_v3.WEIGHTS_HASHES[key][0], digest)})
    with mock.patch.object(keras_mobilenet_v3, "WEIGHTS_HASHES", hashes):
        model = tfkd.create_model(name, image_size=32, num_classes=3, weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("conv").kernel.numpy(),
                                  source.get_layer("conv").kernel.numpy())


def test_weight_file_mistakes_say_which_file_is_needed(tmp_path):
    path = tmp_path / "efficientnetb0_notop.h5"
    write_keras_backbone_file(keras.applications.EfficientNetB0, path, 32)
    with pytest.raises(ValueError, match="not the ImageNet backbone of efficientnet_b1.*"
                                         "efficientnetb1_notop.h5, from https://"):
        tfkd.create_model("efficientnet_b1", image_size=32, num_classes=3, weights=str(path))
    with pytest.raises(FileNotFoundError, match="for mobilenetv3_small it is weights_mobilenet_"
                                                "v3_small_224_1.0_float_no_top_v2.h5"):
        tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=3,
                          weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match=r"alpha=0.5; it has them for alpha in \['0.75', "
                                         r"'1.0'\]"):
        tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=3,
                          weights="imagenet", alpha=0.5)
    with pytest.raises(ValueError, match="convnet_s has no ImageNet weights.*efficientnet_b0"
                                         ".*hub:PRESET"):
        tfkd.create_model("convnet_s", image_size=16, num_classes=3, weights="imagenet")
    assert "mobilenetv3_large" in tfkd.models.pretrained_models()
    assert "vit_tiny" not in tfkd.models.pretrained_models()


def test_freeze_backbone_leaves_the_head_and_keeps_batch_norm_statistics(tmp_path):
    model = tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=3)
    tfkd.models.freeze_backbone(model)
    assert sorted(layer.name for layer in model.layers
                  if layer.trainable and layer.weights) == ["conv_2", "logits"]
    bn = model.get_layer("conv_bn")
    before = bn.moving_mean.numpy().copy()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.train_on_batch(*batch(32, n=8))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)  # inference mode
    tfkd.models.freeze_backbone(model, frozen=False)
    assert all(layer.trainable for layer in model.layers)
