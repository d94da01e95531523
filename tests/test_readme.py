"""Every Python block of the README, run as written, top to bottom, in one namespace.

The blocks read TFKD_README_QUICK=1 themselves and shrink their sizes; nothing else is changed.
What a reader's machine would have, the test makes: an image folder `photos/` (the "Distill your
own model" block) and the ImageNet backbone files in Keras's cache (KERAS_HOME), written from
random backbones in the format Keras downloads, with Keras's expected hashes set to theirs.
The one block that needs a phone and a board is skipped, and only that one.
"""

import hashlib
import os
import pathlib
import re
from unittest import mock

import keras
import numpy as np
import pytest
from keras.src.applications import efficientnet as keras_efficientnet
from keras.src.applications import mobilenet_v3 as keras_mobilenet_v3
from PIL import Image

from tests.helpers import write_keras_backbone_file

README = pathlib.Path(__file__).parent.parent / "README.md"
NEEDS_DEVICES = "# Needs a phone on USB and a board on the network"


def python_blocks(text):
    """The README's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def make_photos(root):
    """photos/train and photos/test, three colour classes of 48x48 PNGs."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 6)):
        for label, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            folder = root / "photos" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 40, (48, 48, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i}.png")


def keras_cache_with_backbones(keras_home):
    """Keras's cache holding the two backbone files the README loads with weights="imagenet",
    and patches of Keras's hash tables that accept them (it checks a cached file's hash)."""
    models = keras_home / "models"
    models.mkdir(parents=True)
    files = {"efficientnetb0_notop.h5": keras.applications.EfficientNetB0,
             "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5":
                 keras.applications.MobileNetV3Small}
    digests = {}
    for name, builder in files.items():
        write_keras_backbone_file(builder, models / name, 32)
        digests[name] = hashlib.sha256((models / name).read_bytes()).hexdigest()
    efficientnet = dict(keras_efficientnet.WEIGHTS_HASHES, b0=(
        keras_efficientnet.WEIGHTS_HASHES["b0"][0], digests["efficientnetb0_notop.h5"]))
    key = "small_224_1.0_float"
    mobilenet = dict(keras_mobilenet_v3.WEIGHTS_HASHES, **{key: (
        keras_mobilenet_v3.WEIGHTS_HASHES[key][0],
        digests["weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"])})
    return [mock.patch.object(keras_efficientnet, "WEIGHTS_HASHES", efficientnet),
            mock.patch.object(keras_mobilenet_v3, "WEIGHTS_HASHES", mobilenet)]


def test_the_readme_has_the_blocks_this_test_expects():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 10
    assert [NEEDS_DEVICES in b for b in blocks].count(True) == 1
    # Sizes shrink only through the variable the blocks read themselves.
    assert 'quick = os.environ.get("TFKD_README_QUICK") == "1"' in blocks[0]


@pytest.mark.slow  # 7.6 min on a busy 2-core machine: `make test-slow`, which CI runs too
def test_every_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFKD_README_QUICK", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    make_photos(tmp_path)
    patches = keras_cache_with_backbones(tmp_path / "keras_home")
    namespace = {"__name__": "__readme__"}
    ran = 0
    with patches[0], patches[1]:
        for index, block in enumerate(python_blocks(README.read_text()), 1):
            if NEEDS_DEVICES in block:
                continue
            exec(compile(block, f"README.md python block {index}", "exec"), namespace)
            ran += 1
    out = capsys.readouterr().out
    # The Keras API block prints the teacher, the distilled and the scratch student.
    for line in ("teacher", "distilled", "from scratch"):
        assert re.search(rf"^{line} +0\.\d+$", out, flags=re.M), line
    for name in ("teacher.keras", "distiller.keras", "student.keras", "student.tflite",
                 "s.tflite", "student_qat.tflite", "cache/train.npz"):
        assert os.path.exists(name), name
    assert len(namespace["rows"]) == 2  # the recipe block, quick: KD and scratch at one side
    assert ran == len(python_blocks(README.read_text())) - 1
