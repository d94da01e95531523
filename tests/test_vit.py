"""Tests for tfkd.models.vit: shapes, patch rule, parameter counts, DeiT heads, errors."""

import keras
import numpy as np
import pytest

from tfkd.models import vit


def _pixels(batch, height, width, dtype="float32"):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(batch, height, width, 3)).astype(dtype)


@pytest.fixture(scope="module")
def deit():
    keras.utils.set_random_seed(0)
    return vit.build("deit_tiny", image_size=(16, 16), num_classes=5)


@pytest.mark.parametrize("name", sorted(vit.VARIANTS))
def test_variant_outputs_logits_of_expected_shape(name):
    model = vit.build(name, image_size=(16, 16), num_classes=7)
    logits = np.asarray(model(_pixels(2, 16, 16), training=False))
    assert model.name == name
    assert logits.shape == (2, 7)
    assert np.all(np.isfinite(logits))


def test_uint8_input_matches_float_input(deit):
    as_float = np.asarray(deit(_pixels(2, 16, 16, "float32")))
    as_uint8 = np.asarray(deit(_pixels(2, 16, 16, "uint8")))
    np.testing.assert_allclose(as_uint8, as_float, rtol=1e-6, atol=1e-6)


def test_non_square_image_works():
    model = vit.build("vit_tiny", image_size=(16, 32), num_classes=3, patch_size=4)
    assert model(_pixels(2, 16, 32)).shape == (2, 3)


@pytest.mark.parametrize(
    "image_size, patch",
    [((32, 32), 4), ((224, 224), 16), ((64, 64), 8), ((28, 28), 2), ((8, 8), 1), ((32, 64), 4)],
)
def test_default_patch_rule(image_size, patch):
    assert vit.default_patch_size(image_size) == patch


def test_default_patch_is_used_by_build():
    model = vit.build("vit_tiny", image_size=(32, 32), num_classes=3)
    kernel = model.get_layer("patch_embedding").kernel
    assert tuple(kernel.shape[:2]) == (4, 4)


def test_non_divisible_image_size_error_says_what_to_pass():
    with pytest.raises(ValueError) as error:
        vit.build("vit_tiny", image_size=(30, 30), num_classes=3, patch_size=4)
    message = str(error.value)
    assert "30x30" in message
    assert "patch_size=4" in message
    assert "image_size=(32, 32)" in message
    assert "2, 3, 5" in message  # patch sizes that do divide 30


def test_no_default_patch_for_odd_large_image():
    with pytest.raises(ValueError, match=r"225x225.*Pass patch_size explicitly.*3, 5"):
        vit.default_patch_size((225, 225))


@pytest.mark.parametrize("name, published", [("vit_tiny", 5.7e6), ("deit_tiny", 5.9e6)])
def test_parameter_count_matches_paper(name, published):
    model = vit.build(name, image_size=(224, 224), num_classes=1000)
    assert abs(model.count_params() - published) / published < 0.05


def test_unknown_option_error_names_accepted_options():
    with pytest.raises(ValueError) as error:
        vit.build("vit_tiny", image_size=(16, 16), num_classes=3, drop_path=0.1)
    message = str(error.value)
    assert "drop_path" in message
    assert "attention_dropout_rate" in message and "dropout_rate" in message


def test_unknown_variant_error():
    with pytest.raises(ValueError, match="deit_tiny"):
        vit.build("vit_huge", image_size=(16, 16), num_classes=3)


def test_distillation_heads_average_to_model_output(deit):
    x = _pixels(3, 16, 16)
    heads = vit.distillation_heads(deit)
    class_logits, distillation_logits = (np.asarray(t) for t in heads(x))
    assert class_logits.shape == distillation_logits.shape == (3, 5)
    assert not np.allclose(class_logits, distillation_logits)
    np.testing.assert_allclose(
        (class_logits + distillation_logits) / 2, np.asarray(deit(x)), rtol=1e-5, atol=1e-5
    )


def test_distillation_heads_share_weights(deit):
    heads = vit.distillation_heads(deit)
    model_ids = {id(w) for w in deit.weights}
    assert {id(w) for w in heads.weights} == model_ids


def test_distillation_heads_none_for_vit():
    model = vit.build("vit_tiny", image_size=(16, 16), num_classes=3)
    assert vit.distillation_heads(model) is None


def test_deit_keras_round_trip_keeps_heads(deit, tmp_path):
    x = _pixels(2, 16, 16)
    before = [np.asarray(t) for t in vit.distillation_heads(deit)(x)]
    path = tmp_path / "deit.keras"
    deit.save(path)
    loaded = keras.saving.load_model(path)
    after = [np.asarray(t) for t in vit.distillation_heads(loaded)(x)]
    for old, new in zip(before, after):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(deit(x)), rtol=1e-5, atol=1e-5)
