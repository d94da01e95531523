"""Feature distillation in the Distiller: stages, alignment, projections, metrics, saving,
the teacher cache, export and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import features
from tfkd.tflite_file import read_info
from tests.helpers import batch

ONE_PER_FAMILY = ["convnet_s", "efficientnet_b0", "mobilenetv3_small", "mobilevit_xxs",
                  "deit_micro"]


def model(name, size=16, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    return tfkd.create_model(name, image_size=size, num_classes=classes)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_every_family_names_its_stages_shallow_to_deep(name):
    net = model(name, size=max(32, tfkd.min_image_size(name)))
    stages = features.stage_outputs(net)
    assert len(stages) >= 2
    layers = [layer.name for layer in net.layers]
    assert [layers.index(s) for s in stages] == sorted(layers.index(s) for s in stages)
    for stage in stages:
        shape = net.get_layer(stage).output.shape
        assert len(shape) in (3, 4) and shape[1:3] != (1, 1)
    if tfkd.describe(name)["kind"] == "cnn":  # CNN stages shrink as they deepen
        sides = [net.get_layer(s).output.shape[1] for s in stages]
        assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)


def test_known_stage_names():
    assert features.stage_outputs(model("convnet_s")) == [
        "stage1_b_relu", "stage2_b_relu", "stage3_b_relu"]
    assert features.stage_outputs(model("vit_micro")) == [
        f"block{i}_mlp_residual" for i in range(4)]


def test_tokens_are_laid_out_on_their_grid_without_prefix_tokens():
    deit = model("deit_micro")  # 16 px: 8x8 patches of 2 px, plus class and distillation token
    tensor, layout = features.layer_output(deit, "block3_mlp_residual", "student")
    assert tensor.shape[1:] == (66, 128)
    assert (layout.kind, layout.grid, layout.prefix_tokens, layout.channels) == (
        "tokens", (8, 8), 2, 128)
    tokens = np.arange(2 * 66 * 128, dtype="float32").reshape(2, 66, 128)
    grid = keras.ops.convert_to_numpy(features.to_map(tokens, layout))
    np.testing.assert_array_equal(grid[1, 0, 3], tokens[1, 2 + 3])  # row 0, column 3
    np.testing.assert_array_equal(grid[0, 2, 1], tokens[0, 2 + 2 * 8 + 1])


def make(teacher, student, terms, **kwargs):
    distiller = tfkd.Distiller(teacher=teacher, student=student, features=terms, **kwargs)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    return distiller


@pytest.mark.parametrize("pair", [("convnet_s", "convnet_s"), ("convnet_s", "deit_micro"),
                                  ("vit_micro", "deit_micro"), ("vit_micro", "convnet_s")])
def test_each_family_pair_trains_with_its_proposed_terms(pair):
    teacher, student = model(pair[0], seed=1), model(pair[1], seed=2)
    terms = features.propose(teacher, student)
    assert terms[0].loss == "hint"
    if pair == ("convnet_s", "convnet_s"):
        assert [t.loss for t in terms] == ["hint", "attention", "attention"]
    if pair == ("vit_micro", "deit_micro"):
        assert [t.loss for t in terms] == ["hint", "relation"]
    distiller = make(teacher, student, terms)
    x, y = batch(16, n=8, seed=4)
    before = [w.numpy().copy() for w in distiller.feature_projections[0].weights]
    logs = distiller.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    for name in distiller._feature_plan.metric_names:
        assert np.isfinite(logs[name]).all() and logs[name][0] > 0, name
    after = distiller.feature_projections[0].weights
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, after))  # it learns
    evaluated = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert set(distiller._feature_plan.metric_names) <= set(evaluated)


def test_the_loss_adds_each_weighted_term_and_the_hint_falls():
    teacher, student = model("convnet_s", seed=1), model("convnet_s", seed=2)
    terms = [("stage3_b_relu", "stage3_b_relu", "hint", 3.0)]
    distiller = make(teacher, student, terms, student_loss_weight=0.5)
    x, y = batch(16, n=16, seed=5)
    logs = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = 0.5 * logs["student_loss"] + 0.5 * logs["distillation_loss"] + 3.0 * logs[
        "hint_loss"]
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    history = distiller.fit(x, y, epochs=8, batch_size=16, verbose=0).history["hint_loss"]
    assert history[-1] < 0.7 * history[0]


def test_feature_distilled_student_exports_like_a_logit_distilled_one(tmp_path):
    x, y = batch(16, n=8, seed=6)
    files = {}
    for label, terms in (("logits", None), ("features", "auto")):
        teacher, student = model("convnet_s", seed=1), model("deit_micro", seed=2)
        terms = features.propose(teacher, student) if terms else None
        make(teacher, student, terms).fit(x, y, epochs=1, batch_size=8, verbose=0)
        files[label] = tfkd.export.to_tflite(student, str(tmp_path / f"{label}.tflite"),
                                             quantization="float32")
    logits, feats = (read_info(files[k].path) for k in ("logits", "features"))
    assert feats.op_counts == logits.op_counts
    assert files["features"].size_bytes == files["logits"].size_bytes


def test_save_and_load_keep_terms_and_projections(tmp_path):
    teacher, student = model("convnet_s", seed=1), model("deit_micro", seed=2)
    distiller = make(teacher, student, features.propose(teacher, student, "hint"))
    x, y = batch(16, n=8, seed=7)
    distiller.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = tfkd.models.load_model(path)
    assert loaded.features == distiller.features
    for a, b in zip(distiller.feature_projections[0].weights,
                    loaded.feature_projections[0].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    want = distiller.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["hint_loss"], want["hint_loss"], rtol=1e-5)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # training continues


def test_cached_logits_give_the_same_losses_and_run_only_part_of_the_teacher():
    teacher, student = model("convnet_s", seed=1), model("convnet_s", seed=2)
    terms = [("stage2_b_relu", "stage2_b_relu", "attention", 1.0)]
    distiller = make(teacher, student, terms)
    x, y = batch(16, n=8, seed=8)
    logits = teacher.predict(x, verbose=0)
    plain = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    cached = distiller.evaluate(tf.data.Dataset.from_tensor_slices((x, y, logits)).batch(8),
                                verbose=0, return_dict=True)
    for key in ("loss", "distillation_loss", "attention_loss"):
        np.testing.assert_allclose(cached[key], plain[key], rtol=1e-5, err_msg=key)
    partial = distiller._feature_plan.teacher_features
    assert "logits" not in [layer.name for layer in partial.layers]


def test_under_a_mirrored_strategy_features_match_one_device():
    x, y = batch(16, n=8, seed=9)
    # Two replicas on the two logical CPUs conftest.py makes. Reduced through one device, not
    # with collective ops: collective instance keys restart with each MirroredStrategy and can
    # collide with an earlier test's in this process.
    mirrored = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")][:2],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert mirrored.num_replicas_in_sync == 2
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        with strategy.scope():
            teacher, student = model("convnet_s", seed=1), model("convnet_s", seed=2)
            distiller = tfkd.Distiller(teacher=teacher, student=student,
                                       features=[("stage3_b_relu", "stage2_b_relu")])
            distiller.compile(optimizer=keras.optimizers.SGD(0.05))
        results.append(distiller.train_on_batch(x, y, return_dict=True))
    np.testing.assert_allclose(results[1]["hint_loss"], results[0]["hint_loss"], rtol=1e-5)
    np.testing.assert_allclose(results[1]["loss"], results[0]["loss"], rtol=1e-5)


def test_bad_terms_say_what_to_do():
    teacher, student = model("convnet_s"), model("vit_micro")
    cases = [
        ("stage9", r"The teacher 'convnet_s' has no layer 'stage9'.*stage outputs are "
                   r"\['stage1_b_relu'"),
    ]
    for layer, message in cases:
        with pytest.raises(ValueError, match=message):
            tfkd.Distiller(teacher=teacher, student=student,
                           features=[(layer, "block0_mlp_residual")])
    with pytest.raises(ValueError, match="compares positions.*'pool' is a vector"):
        tfkd.Distiller(teacher=teacher, student=student,
                       features=[("pool", "block0_mlp_residual", "attention")])
    with pytest.raises(ValueError, match="features must be a list of terms"):
        tfkd.Distiller(teacher=teacher, student=student, features="auto")
    with pytest.raises(ValueError, match="A feature term must be"):
        tfkd.Distiller(teacher=teacher, student=student, features=[("only_one",)])
    with pytest.raises(ValueError, match="Unknown feature loss 'l1'"):
        features.FeatureTerm("a", "b", "l1")
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        features.FeatureTerm("a", "b", "hint", -1)
    with pytest.raises(ValueError, match="Unknown feature preset 'best'"):
        features.propose(teacher, student, "best")
    with pytest.raises(ValueError, match="cannot lay out"):
        features.layer_output(model("mobilevit_xxs", size=32), "s3_mvit_unfold_split", "student")


def test_a_study_with_features_runs_a_kd_feat_twin_of_each_kd_run(tmp_path):
    from tfkd.recipes import arch_pairing
    config = arch_pairing.Config(
        teachers=("convnet_s",), students=("convnet_s", "deit_micro"), teacher_size=16,
        student_size=16, data_size=16, limit=256, teacher_limit=256, test_limit=128,
        batch_size=64, epochs=1, teacher_epochs=1, quantization="none", features="auto",
        distillation_loss="dkd", output_dir=str(tmp_path), verbose=0)
    rows = {r["run_id"]: r for r in arch_pairing.run(config)}
    assert sorted(rows) == sorted([f"{s}-r16-{m}-convnet_s-s0" for s in ("convnet_s", "deit_micro")
                                   for m in ("kd", "kd+feat")] + [
        "convnet_s-r16-scratch-s0", "deit_micro-r16-scratch-s0"])
    study = tmp_path / "arch_pairing" / "default"
    history = (study / "runs" / "deit_micro-r16-kd+feat-convnet_s-s0" / "history.csv")
    header = history.read_text().splitlines()[0].split(",")
    assert "hint_loss" in header and "val_hint_loss" in header
    plain = (study / "runs" / "deit_micro-r16-kd-convnet_s-s0" / "history.csv").read_text()
    assert "hint_loss" not in plain
    report = (study / "report.md").read_text()
    assert "kd+feat" in report.split("## KD gain over scratch")[1]
    table = arch_pairing.format_table(list(rows.values()))
    assert "convnet_s+feat" in table


def test_feature_and_loss_settings_are_checked_before_any_work(tmp_path):
    from tfkd.recipes import resolution_sweep
    from tfkd.recipes.config import ConfigError
    cases = [(dict(features="best"), "features: features='best' is neither a preset"),
             (dict(features="a:b:hint:heavy"), "its weight 'heavy' is not a number"),
             (dict(features="a:b:l2"), "Unknown feature loss 'l2'"),
             (dict(distillation_loss="mse"), "distillation_loss='mse'; choose one of kl, ")]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            resolution_sweep.Config(output_dir=str(tmp_path), **fields).check()
    assert tfkd.features.parse("t1:s1,t2:s2:attention:0.5") == [
        features.FeatureTerm("t1", "s1"), features.FeatureTerm("t2", "s2", "attention", 0.5)]
    assert tfkd.features.parse("none") is None and tfkd.features.parse("auto") == "auto"


def test_loss_kwargs_reach_the_loss():
    teacher, student = model("vit_micro", seed=1), model("deit_micro", seed=2)
    x, y = batch(16, n=4, seed=10)
    values = {}
    for heads in (1, 4):
        term = tfkd.FeatureTerm("block3_mlp_residual", "block3_mlp_residual", "relation", 1.0,
                                {"heads": heads})
        logs = make(teacher, student, [term]).evaluate(x, y, verbose=0, return_dict=True)
        values[heads] = logs["relation_loss"]
    assert values[1] != pytest.approx(values[4], rel=1e-3)
    term = tfkd.FeatureTerm("block3_mlp_residual", "block3_mlp_residual", "relation", 1.0,
                            {"heads": 3})
    with pytest.raises(ValueError, match="heads=3 relation heads, but the student has 128"):
        tfkd.Distiller(teacher=teacher, student=student, features=[term])  # before any fit
