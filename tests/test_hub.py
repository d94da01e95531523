"""keras-hub presets as tfkd models, offline: preset folders saved here from small randomly
initialized classifiers of the real keras-hub classes, loaded by tfkd's real code."""

import subprocess
import sys
import time

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tests.helpers import batch, save_tiny_hub_preset


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """hub:FOLDER names of a ViT (fixed 32x32), a DeiT (32x32) and a ResNet (any size) preset,
    each with a 4-class head, and the keras-hub classifiers they were saved from."""
    root = tmp_path_factory.mktemp("presets")
    made = {kind: save_tiny_hub_preset(root / kind, kind) for kind in ("vit", "deit", "resnet")}
    return {kind: (f"hub:{root / kind}", task) for kind, task in made.items()}


def _preprocessed(task, x):
    """What keras-hub's own preprocessor gives the classifier: its converter's scale, offset."""
    converter = task.preprocessor.image_converter
    scale, offset = (np.asarray(v if v is not None else d, "float32")
                     for v, d in ((converter.scale, 1.0), (converter.offset, 0.0)))
    return x.astype("float32") * scale + offset


def test_the_preset_head_is_kept_when_the_classes_match(presets):
    name, task = presets["vit"]
    model = tfkd.create_model(name, image_size=32, num_classes=4)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    x, _ = batch(32, n=3)
    # Raw pixels in, the preset's preprocessing inside: the same logits as keras-hub's own
    # classifier on preprocessed images (keras-hub's head ends in no activation here either).
    expected = task(_preprocessed(task, x))
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model(x), model(x.astype("float32")), rtol=1e-5, atol=1e-6)


def test_a_fresh_head_on_the_preset_backbone_when_the_classes_differ(presets):
    name, task = presets["resnet"]
    model = tfkd.create_model(name, image_size=48, num_classes=6)
    assert model.output_shape == (None, 6)
    classifier = next(layer for layer in model.layers if hasattr(layer, "backbone"))
    for a, b in zip(classifier.backbone.weights, task.backbone.weights):  # the file's weights
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert classifier.backbone.input_shape[1:3] == (None, None)  # a CNN runs at 48 itself
    assert not any(isinstance(layer, keras.layers.Resizing)
                   for layer in tfkd.models.all_layers(model)), "no resize for a CNN"


def test_a_fixed_size_backbone_gets_its_input_resized_inside(presets):
    name, task = presets["deit"]
    model = tfkd.create_model(name, image_size=16, num_classes=4)
    assert model.input_shape == (None, 16, 16, 3)
    x, _ = batch(16, n=2)
    big = tf.image.resize(x.astype("float32"), (32, 32)).numpy()
    np.testing.assert_allclose(model(x), task(_preprocessed(task, big)), rtol=1e-4, atol=1e-5)
    info = tfkd.describe(name, image_size=16, num_classes=4)
    assert info["family"] == "hub" and info["kind"] == "vit" and info["fixed_size"] == (32, 32)
    assert info["backbone"] == "DeiTBackbone" and info["params"] == model.count_params()
    assert tfkd.describe(presets["resnet"][0], image_size=32, num_classes=4)["kind"] == "cnn"


def test_hub_teacher_and_student_distil_cache_save_and_export(presets, tmp_path):
    teacher = tfkd.create_model(presets["resnet"][0], image_size=32, num_classes=4)
    student = tfkd.create_model(presets["deit"][0], image_size=32, num_classes=4)
    x, y = batch(32, n=16, num_classes=4)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    cache = tfkd.TeacherCache.build(teacher, data, str(tmp_path / "t.npz"))
    np.testing.assert_allclose(cache.logits(), teacher.predict(x, verbose=0), rtol=1e-2,
                               atol=1e-2)  # float16 storage
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in student.trainable_weights]
    distiller.fit(cache.dataset(data, batch_size=8), epochs=1, verbose=0)
    assert any(not np.array_equal(a, w.numpy())
               for a, w in zip(before, student.trainable_weights))
    path = tmp_path / "student.keras"
    student.save(path)
    # A fresh process, as a user's script: tfkd.models.load_model registers keras-hub itself.
    code = ("import sys, numpy as np, tfkd; m = tfkd.models.load_model(sys.argv[1]); "
            "print(m.output_shape)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(None, 4)" in done.stdout
    again = tfkd.models.load_model(path)
    np.testing.assert_allclose(again(x), student(x), rtol=1e-5, atol=1e-5)
    exported = tfkd.export.to_tflite(student, str(tmp_path / "s.tflite"), quantization="int8",
                                     representative_data=data)
    assert exported.inputs[0].dtype == "int8"
    checked = tfkd.export.evaluate_tflite(exported.path, data, keras_model=student)
    assert checked.count == 16 and checked.agreement is not None


def test_list_models_names_the_hub_presets():
    presets = tfkd.list_models("hub")
    assert "hub:resnet_18_imagenet" in presets and "hub:vit_base_patch16_224_imagenet" in presets
    assert not any(name.startswith("hub:") for name in tfkd.list_models())  # zoo only


def test_offline_a_preset_name_fails_fast_with_what_to_do(monkeypatch, tmp_path):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # no network, whatever the machine has
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        tfkd.create_model("hub:resnet_18_imagenet", image_size=32, num_classes=3)
    assert time.perf_counter() - start < 30
    message = str(err.value)
    assert "from Kaggle" in message and "save_to_preset('FOLDER')" in message
    assert "hub:/path/to/FOLDER" in message


def test_hub_mistakes_get_clear_messages(presets, tmp_path, monkeypatch):
    name = presets["resnet"][0]
    with pytest.raises(ValueError, match="comes with its own weights; drop weights="):
        tfkd.create_model(name, image_size=32, num_classes=4, weights="imagenet")
    with pytest.raises(ValueError, match="takes no options"):
        tfkd.create_model(name, image_size=32, num_classes=4, alpha=0.5)
    with pytest.raises(ValueError, match="needs images of at least 32x32"):
        tfkd.create_model(name, image_size=16, num_classes=4)
    with pytest.raises(ValueError, match="hub: needs a preset after the colon"):
        tfkd.create_model("hub:", image_size=32, num_classes=4)
    with pytest.raises(ValueError, match="keras-hub has no preset 'resnet_19'"):
        tfkd.create_model("hub:resnet_19", image_size=32, num_classes=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a keras-hub preset folder.*save_to_preset"):
        tfkd.create_model(f"hub:{tmp_path / 'empty'}", image_size=32, num_classes=4)
    with pytest.raises(FileNotFoundError, match="no preset folder"):
        tfkd.create_model(f"hub:{tmp_path / 'missing'}", image_size=32, num_classes=4)
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'tfkd\[hub\]'"):
        tfkd.create_model(name, image_size=32, num_classes=4)


def test_a_preset_without_an_image_converter_is_refused(tmp_path):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block")
    keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3).save_to_preset(
        str(tmp_path / "bare"))
    with pytest.raises(ValueError, match="no image converter, so tfkd cannot know the "
                                         "preprocessing"):
        tfkd.create_model(f"hub:{tmp_path / 'bare'}", image_size=32, num_classes=3)



def test_a_fixed_size_efficientnet_is_resized_and_a_too_small_vgg_says_so(tmp_path):
    """keras-hub's EfficientNet names its fixed size input_shape (the others image_shape); VGG's
    7x7 head convolution cannot run on small images."""
    models, hub_layers = keras_hub.models, keras_hub.layers
    backbone = models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1],
        stackwise_input_filters=[8, 8], stackwise_output_filters=[8, 16],
        stackwise_expansion_ratios=[1, 2], stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
        stackwise_strides=[1, 2], stackwise_block_types=["fused", "unfused"],
        width_coefficient=1.0, depth_coefficient=1.0, input_shape=(64, 64, 3))
    converter = hub_layers.EfficientNetImageConverter(image_size=(64, 64), scale=1 / 255)
    models.EfficientNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=models.EfficientNetImageClassifierPreprocessor(image_converter=converter),
    ).save_to_preset(str(tmp_path / "effnet"))
    model = tfkd.create_model(f"hub:{tmp_path / 'effnet'}", image_size=32, num_classes=3)
    assert model.input_shape == (None, 32, 32, 3)
    assert tfkd.describe(f"hub:{tmp_path / 'effnet'}")["fixed_size"] == (64, 64)

    vgg = models.VGGBackbone(stackwise_num_repeats=[1, 1, 1], stackwise_num_filters=[8, 16, 16])
    converter = hub_layers.VGGImageConverter(image_size=(64, 64), scale=1 / 255)
    models.VGGImageClassifier(
        backbone=vgg, num_classes=3, pooling_hidden_dim=16,
        preprocessor=models.VGGImageClassifierPreprocessor(image_converter=converter),
    ).save_to_preset(str(tmp_path / "vgg"))
    assert tfkd.create_model(f"hub:{tmp_path / 'vgg'}", image_size=64,
                             num_classes=3).output_shape == (None, 3)
    with pytest.raises(ValueError, match=r"cannot run at image_size=\(32, 32\).*its preset "
                                         r"uses \(64, 64\)\); pass a larger image_size"):
        tfkd.create_model(f"hub:{tmp_path / 'vgg'}", image_size=32, num_classes=3)
