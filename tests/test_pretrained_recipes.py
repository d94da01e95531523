"""Pretrained teachers and students in the recipes, offline: a keras-hub preset folder and an
ImageNet backbone file made here, an image folder of PNGs, real training on tiny settings."""

import json
import os

import keras
import numpy as np
import pytest
from absl import flags
from PIL import Image

import tfkd
from tests.helpers import save_tiny_hub_preset, write_keras_backbone_file
from tests.test_recipes import recipe
from tfkd.recipes import arch_pairing, cli, resolution_sweep, train_teacher
from tfkd.recipes.config import ConfigError

MOBILENET_FILE = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """image_folder:PATH with train/ and test/, three classes of 32x32 RGB PNGs that differ in
    colour (learnable in a few steps)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 12)):
        for label, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 40, (32, 32, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return f"image_folder:{root}"


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / MOBILENET_FILE
    write_keras_backbone_file(keras.applications.MobileNetV3Small, path, 32)
    return str(path)


SMALL = dict(data_size=32, teacher_size=32, batch_size=32, limit=0, teacher_limit=0,
             verbose=0, targets=())


def test_warm_up_trains_the_head_alone(images, backbone_file, tmp_path):
    teacher = train_teacher.run(train_teacher.Config(
        dataset=images, teacher="mobilenetv3_small", teacher_weights=backbone_file,
        teacher_epochs=1, output_dir=str(tmp_path), **SMALL))
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                 input_shape=(32, 32, 3))
    source.load_weights(backbone_file)
    saved = tfkd.models.load_model(teacher.path)
    for layer in source.layers:  # one warm-up epoch: the backbone is the file's, BN included
        if layer.weights:
            for a, b in zip(layer.get_weights(), saved.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b, err_msg=layer.name)
    info = json.loads(open(os.path.join(os.path.dirname(teacher.path), "teacher.json")).read())
    assert info["warmup_epochs"] == 1 and info["epochs_run"] == 1
    assert info["config"]["weights"] == backbone_file


def test_a_hub_teacher_fine_tuned_then_distilled_from_its_file(images, backbone_file, tmp_path):
    """The flow of the README: train_teacher on a hub preset and an image folder, then a study
    that distils a student with ImageNet weights from that saved teacher."""
    preset = tmp_path / "resnet_preset"
    save_tiny_hub_preset(preset, "resnet", num_classes=5)
    out, study = recipe("train_teacher", tmp_path / "a", f"--teacher=hub:{preset}",
                        f"--dataset={images}", "--teacher_size=32", "--data_size=32",
                        "--teacher_epochs=2", "--limit=0", "--teacher_limit=0",
                        "--batch_size=32")
    assert "warm-up: 1 epoch(s) training the head alone" in out
    (key,) = os.listdir(study / "teachers")
    info = json.loads((study / "teachers" / key / "teacher.json").read_text())
    assert info["epochs_run"] == 2 and info["config"]["weights"] == "preset"
    saved = study / "teachers" / key / "teacher.keras"
    assert tfkd.models.load_model(saved).output_shape == (None, 3)  # a fresh 3-class head

    rows = resolution_sweep.run(resolution_sweep.Config(
        dataset=images, teacher_path=str(saved), student="mobilenetv3_small",
        student_weights=backbone_file, resolutions=(32,), scratch=False, epochs=1,
        quantization="int8", output_dir=str(tmp_path / "b"), **SMALL))
    (row,) = rows
    assert row["teacher"] == "resnet_preset" and row["teacher_family"] == "hub"
    assert row["teacher_kind"] == "cnn" and row["teacher_resolution"] == 32
    assert row["teacher_accuracy"] == pytest.approx(info["accuracy"], abs=1e-6)
    assert row["tflite"]["int8"]["passed"]  # exported and checked against the float model
    sweep = tmp_path / "b" / "resolution_sweep" / "default" / "teachers"
    assert not any((sweep / k / "teacher.keras").exists() for k in os.listdir(sweep)), \
        "the study used the saved teacher, it trained none"


def test_weights_is_train_teachers_name_for_teacher_weights():
    flag_values = flags.FlagValues()
    cli.define_flags(train_teacher.Config, flag_values)
    flag_values(["train_teacher", "--weights=imagenet", "--teacher=efficientnet_b0"])
    config = cli.config_from_flags(train_teacher.Config, flag_values)
    assert config.teacher_weights == "imagenet"


def test_pretrained_settings_are_checked_before_any_work(tmp_path):
    cases = [
        (train_teacher.Config(teacher_weights="imagenet"),
         r"teacher_weights=imagenet: \['convnet_m'\] have no ImageNet weights"),
        (resolution_sweep.Config(student="convnet_s", student_weights="imagenet"),
         r"student_weights=imagenet: \['convnet_s'\] have no ImageNet weights"),
        (resolution_sweep.Config(student_weights=str(tmp_path / "nope.h5")),
         "pass imagenet or the path of an existing .h5"),
        (resolution_sweep.Config(teacher_path=str(tmp_path / "teacher.keras")),
         "teacher_path=.*no such .keras file"),
        (train_teacher.Config(teacher_warmup_epochs=-1), "teacher_warmup_epochs=-1"),
        (resolution_sweep.Config(teacher="hub:", teacher_size=32),
         "hub: needs a preset after the colon"),
        (resolution_sweep.Config(student=f"hub:{tmp_path}"),
         "resolutions: hub:.* is not a keras-hub preset folder"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message):
            config.check()
    saved = tmp_path / "teacher.keras"
    saved.write_bytes(b"")
    with pytest.raises(ConfigError, match="arch_pairing trains one teacher per architecture"):
        arch_pairing.Config(teacher_path=str(saved)).check()
    with pytest.raises(ConfigError) as err:
        resolution_sweep.Config(student="convnet_s", student_weights="imagenet").check()
    assert err.value.as_flags().startswith("--student_weights=imagenet: ")


def test_a_saved_teacher_of_other_classes_is_refused(images, tmp_path):
    path = tmp_path / "teacher.keras"
    tfkd.create_model("convnet_s", image_size=16, num_classes=5).save(path)
    with pytest.raises(ConfigError, match="outputs 5 classes but image_folder:.* has 3; train "
                                          "the teacher on this dataset"):
        resolution_sweep.run(resolution_sweep.Config(
            dataset=images, teacher_path=str(path), student="convnet_s", resolutions=(16,),
            scratch=False, epochs=1, output_dir=str(tmp_path / "out"), **SMALL))
