"""Tests for tfkd.models.mobilevit: sizes, parameter counts, small inputs, saving."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfkd.models import mobilevit

# At 32x32 the last MobileViT block sees a 1x1 map (one token), so Keras warns that its
# attention softmax is over a size-1 axis. That is expected there; see `_patch_size`.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

# Paper, Table 4 / Fig. 1: parameters at 1000 classes.
PAPER_PARAMS = {"mobilevit_xxs": 1.3e6, "mobilevit_xs": 2.3e6, "mobilevit_s": 5.6e6}


def _pixels(size, batch=2, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, *size, 3)).astype(dtype)


def test_module_interface():
    assert mobilevit.FAMILY == "mobilevit"
    assert mobilevit.KIND == "vit"
    assert set(mobilevit.VARIANTS) == set(PAPER_PARAMS)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_param_count_matches_paper(name):
    model = mobilevit.build(name, image_size=(256, 256), num_classes=1000)
    assert model.name == name
    assert model.count_params() == pytest.approx(PAPER_PARAMS[name], rel=0.10)


def test_param_count_does_not_depend_on_image_size():
    # The small-size rule changes patch shapes, never weights.
    counts = {
        mobilevit.build("mobilevit_xxs", image_size=size, num_classes=10).count_params()
        for size in [(32, 32), (48, 48), (40, 56), (64, 64)]
    }
    assert len(counts) == 1


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (48, 48), (40, 56), (64, 64), (96, 96)])
def test_forward_shape_and_finite(size):
    model = mobilevit.build("mobilevit_xxs", image_size=size, num_classes=7)
    logits = keras.ops.convert_to_numpy(model(_pixels(size), training=False))
    assert logits.shape == (2, 7)
    assert np.isfinite(logits).all()


def test_uint8_input_matches_float():
    model = mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=10)
    as_uint8 = keras.ops.convert_to_numpy(model(_pixels((32, 32), dtype="uint8")))
    as_float = keras.ops.convert_to_numpy(model(_pixels((32, 32), dtype="float32")))
    np.testing.assert_allclose(as_uint8, as_float, rtol=1e-5, atol=1e-5)


def test_outputs_logits_not_probabilities():
    model = mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=10)
    assert model.layers[-1].get_config()["activation"] == "linear"


def test_batchnorm_momentum_suits_short_schedules():
    model = mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=10)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)


def test_trains_at_small_non_square_size():
    model = mobilevit.build("mobilevit_xxs", image_size=(40, 56), num_classes=3)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # tracing the train graph would take most of this two-step test
    )
    x, y = _pixels((40, 56), batch=4), np.array([0, 1, 2, 0])
    stem_bn = model.get_layer("stem_bn")
    before = keras.ops.convert_to_numpy(stem_bn.moving_mean).copy()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # With momentum 0.9, two steps move the moving mean by ~19% of the batch mean.
    assert not np.allclose(keras.ops.convert_to_numpy(stem_bn.moving_mean), before)


def test_only_builtin_layers():
    model = mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=10)
    for layer in model.layers:
        assert type(layer).__module__.startswith("keras."), type(layer)
        assert not isinstance(layer, keras.layers.Lambda)


def _env_without_tfkd_path():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def test_saved_model_loads_without_tfkd(tmp_path):
    model = mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=5)
    x = _pixels((32, 32))
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", keras.ops.convert_to_numpy(model(x, training=False)))
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import keras
        model = keras.saving.load_model("model.keras")
        got = keras.ops.convert_to_numpy(model(np.load("x.npy"), training=False))
        np.testing.assert_allclose(got, np.load("expected.npy"), rtol=1e-5, atol=1e-6)
        assert not any(m.startswith("tfkd") for m in sys.modules), "tfkd was imported"
        print("LOADED_OK")
        """
    )
    # cwd=tmp_path so that tfkd is not even importable from the working directory.
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env_without_tfkd_path(),
    )
    assert "LOADED_OK" in result.stdout, result.stderr[-3000:]


def test_unknown_option_names_accepted_options():
    with pytest.raises(ValueError,
                       match=r"does not accept option\(s\) \[.patch_size.\]; accepted: \[.dropout.\]"):
        mobilevit.build("mobilevit_xxs", image_size=(32, 32), num_classes=10, patch_size=4)


def test_unknown_variant_lists_variants():
    with pytest.raises(ValueError, match="mobilevit_xxs"):
        mobilevit.build("mobilevit_xl", image_size=(32, 32), num_classes=10)
