"""Training a gated model for its curve: `spzoo train --mac-budget` (close the
gates below a MAC budget) and `--threshold-training` (train for every
threshold, fine-tuning or from scratch)."""

import numpy as np
import pytest

import spzoo.models
from spzoo.layers import PresynapticGate
from spzoo.metrics import macs
from spzoo.training.budget import CLOSED_LOG_ALPHA, check_mac_budget, close_to_budget

SPEC = {
    "family": "resnet",
    "name": "tiny_gated_resnet",
    "stem_filters": 8,
    "cell": "conv",
    "gate": {"input_dependent": False, "mac_weighted": True, "sparsity_weight": 0.5},
    "stacks": [
        {"blocks": 1, "filters": 8, "kernels": {"1": 0.5, "3": 0.5}, "neuron": "max"},
        {"blocks": 1, "filters": 16, "kernels": {"3": 1.0}, "neuron": "max"},
    ],
}


def spread_model(input_dependent=False):
    model = spzoo.models.build(
        {**SPEC, "gate": {**SPEC["gate"], "input_dependent": input_dependent}},
        (8, 8, 1),
        3,
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, PresynapticGate):
            log_alpha = rng.normal(2.0, 2.0, layer.filters).astype("float32")
            layer.presynaptic_bias.assign(log_alpha / layer.log_alpha_scale)
    return model


def all_log_alpha(model):
    return np.concatenate(
        [g.static_log_alpha() for g in model.layers if isinstance(g, PresynapticGate)]
    )


def test_closes_the_lowest_gates_down_to_the_lowest_fitting_threshold():
    model = spread_model()
    before = all_log_alpha(model)
    ungated = macs(model)
    result = close_to_budget(model, 0.6)
    after = all_log_alpha(model)
    threshold = result["threshold"]
    shut = before < threshold
    assert result["closed"] == shut.sum() > 0 and result["gates"] == before.size
    np.testing.assert_allclose(after[shut], CLOSED_LOG_ALPHA, rtol=1e-6)
    np.testing.assert_allclose(after[~shut], before[~shut], rtol=1e-6)
    assert result["macs"] == macs(model, threshold=-np.inf) <= 0.6 * ungated
    assert result["macs_fraction"] == pytest.approx(result["macs"] / ungated)
    # The lowest threshold that fits: one gate fewer closed costs too much.
    lower = np.max(before[shut])
    reopened = spread_model()
    assert macs(reopened, threshold=float(lower)) > 0.6 * ungated


def test_bad_budgets_and_models_are_refused():
    for value in (0, 1, 1.5, -0.1, "half", True, float("nan")):
        with pytest.raises(ValueError, match=r"`mac_budget` must be a fraction"):
            check_mac_budget(value)
    with pytest.raises(ValueError, match="has input-dependent gates"):
        close_to_budget(spread_model(input_dependent=True), 0.5)
    plain = spzoo.models.build({**SPEC, "gate": None}, (8, 8, 1), 3)
    with pytest.raises(ValueError, match="has no block gates"):
        close_to_budget(plain, 0.5)
    with pytest.raises(ValueError, match="with every gate closed"):
        close_to_budget(spread_model(), 0.01)  # the stem and head stay


def test_train_needs_init_from_for_a_budget(tmp_path, capsys):
    from spzoo.cli import main

    argv = ["train", "gated_sp_resnet", "--dataset", "sklearn_digits"]
    argv += ["--mac-budget", "0.5", "--output-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "spzoo: error: `mac_budget` closes the gates of a trained model: it "
        "needs `init_from` (`--init-from ZOO_NAME`)."
    )


def tiny_gated_zoo(one_model_zoo, tmp_path) -> list:
    """A zoo of one gated model, `tiny.sklearn_digits`; returns the
    `spzoo train` arguments of a 2-step fine-tune from it."""
    import json

    spec = {**SPEC, "name": "tiny_gated_resnet"}
    model = spzoo.models.build(spec, (8, 8, 1), 10, name="tiny")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, PresynapticGate):
            log_alpha = rng.normal(2.0, 2.0, layer.filters).astype("float32")
            layer.presynaptic_bias.assign(log_alpha / layer.log_alpha_scale)
    one_model_zoo(model, "tiny.sklearn_digits", spec, "sklearn_digits")
    spec_path = tmp_path / "tiny_gated_resnet.json"
    spec_path.write_text(json.dumps(spec))
    argv = ["train", str(spec_path), "--dataset", "sklearn_digits", "--epochs", "1"]
    argv += ["--steps-per-epoch", "2", "--batch-size", "16"]
    argv += ["--init-from", "tiny.sklearn_digits"]
    return argv + ["--output-dir", str(tmp_path / "runs")]


RUN = "tiny_gated_resnet.sklearn_digits"


@pytest.mark.slow
def test_train_mac_budget_fine_tunes_the_zoo_model_at_the_budget(
    one_model_zoo, tmp_path, capsys
):
    import json

    import keras

    from spzoo.cli import main

    argv = tiny_gated_zoo(one_model_zoo, tmp_path)
    assert main([*argv, "--lr", "1e-9", "--mac-budget", "0.6"]) == 0
    assert "--mac-budget 0.6: closed " in capsys.readouterr().out
    run = json.loads((tmp_path / "runs" / f"{RUN}.json").read_text())
    budget = run["recipe"]["mac_budget"]
    assert budget["mac_budget"] == 0.6 and budget["macs_fraction"] <= 0.6
    assert run["recipe"]["init_from"]["head"] is True  # 10 classes: kept
    command = run["recipe"]["command"]
    assert "--init-from tiny.sklearn_digits --mac-budget 0.6" in command
    trained = keras.saving.load_model(tmp_path / "runs" / f"{RUN}.keras")
    assert macs(trained, threshold=-np.inf) <= 0.6 * macs(trained)


@pytest.mark.slow
def test_train_threshold_training_keeps_batch_norm_and_saves_no_threshold(
    one_model_zoo, tmp_path, capsys
):
    import json

    import keras

    from spzoo import zoo
    from spzoo.cli import main
    from spzoo.layers.hard_concrete_gate import get_threshold

    argv = tiny_gated_zoo(one_model_zoo, tmp_path)
    assert main([*argv, "--threshold-training", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "--threshold-training 0.5: thresholds none, " in out
    run = json.loads((tmp_path / "runs" / f"{RUN}.json").read_text())
    assert run["recipe"]["threshold_training"]["min_fraction"] == 0.5
    assert "--threshold-training 0.5" in run["recipe"]["command"]
    trained = keras.saving.load_model(tmp_path / "runs" / f"{RUN}.keras")
    source = zoo.load("tiny.sklearn_digits")
    assert get_threshold(trained) is None
    names = [
        layer.name
        for layer in trained.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert names
    for name in names:  # frozen: the source's statistics
        for a, b in zip(
            trained.get_layer(name).get_weights(),
            source.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert main([*argv, "--threshold-training", "2"]) == 2
    assert capsys.readouterr().err.startswith(
        "spzoo: error: `threshold_training` must be a fraction of the ungated MACs"
    )


def test_gates_in_training_close_the_channels_below_the_threshold():
    from spzoo.layers import HardConcreteGate

    gate = HardConcreteGate(seed=0)
    log_alpha = np.array([[-1.0, 1.0, 4.0, 6.0]] * 64, dtype="float32")
    gate.build(log_alpha.shape)
    free = np.asarray(gate(log_alpha, training=True))
    assert (free[:, 3] > 0).all() and free.std(axis=0)[:3].max() > 0  # sampled
    gate.set_threshold(3.0)
    closed = np.asarray(gate(log_alpha, training=True))
    assert (closed[:, :2] == 0).all() and (closed[:, 3] > 0).all()
    scoped = np.asarray(gate(log_alpha, training=True, threshold=5.0))
    assert (scoped[:, :3] == 0).all() and (scoped[:, 3] > 0).all()


def test_threshold_sampling_draws_none_the_cheapest_point_and_between():
    from spzoo.layers.hard_concrete_gate import get_threshold
    from spzoo.training.budget import budget_threshold
    from spzoo.training.threshold_sampling import ThresholdSampling, threshold_range

    model = spread_model()
    low, high = threshold_range(model, 0.6)
    assert high == budget_threshold(model, 0.6) and low < high
    assert macs(model, threshold=high) <= 0.6 * macs(model)
    sampling = ThresholdSampling(0.6, seed=3)
    sampling.set_model(model)
    sampling.on_epoch_begin(0)
    draws = [sampling.draw() for _ in range(600)]
    nones = sum(d is None for d in draws)
    cheapest = sum(d == high for d in draws)
    between = [d for d in draws if d is not None and d != high]
    assert 150 < nones < 250 and 150 < cheapest < 250
    assert all(low <= d <= high for d in between) and np.std(between) > 0
    sampling.on_epoch_begin(0)  # a resumed epoch draws the same sequence
    assert [sampling.draw() for _ in range(600)] == draws
    sampling.on_train_batch_begin(0)
    sampling.on_test_begin()
    assert get_threshold(model) is None
    with pytest.raises(ValueError, match="`min_fraction` must be a fraction"):
        ThresholdSampling(1.0)


def test_threshold_sampling_waits_for_its_first_epoch():
    from spzoo.layers.hard_concrete_gate import get_threshold, set_threshold
    from spzoo.training.threshold_sampling import ThresholdSampling

    model = spread_model()
    sampling = ThresholdSampling(0.6, seed=3, start_epoch=2)
    sampling.set_model(model)
    set_threshold(model, 1.0)
    sampling.on_epoch_begin(1)
    for batch in range(20):
        sampling.on_train_batch_begin(batch)
        assert get_threshold(model) is None  # no draws before epoch 2
    sampling.on_epoch_begin(2)
    drawn = []
    for batch in range(20):
        sampling.on_train_batch_begin(batch)
        drawn.append(get_threshold(model))
    assert any(t is not None for t in drawn)
    fresh = spzoo.models.build(SPEC, (8, 8, 1), 3)  # every gate at 3.0
    unranked = ThresholdSampling(0.6, seed=3)
    unranked.set_model(fresh)
    unranked.on_epoch_begin(0)
    unranked.on_train_batch_begin(0)
    assert unranked.high == np.inf and get_threshold(fresh) is None
    for bad in (-1, 1.5):
        with pytest.raises(ValueError) as info:
            ThresholdSampling(0.6, start_epoch=bad)
        assert str(info.value) == (
            f"`start_epoch` must be an integer >= 0; received {bad!r}."
        )


def test_train_refuses_a_threshold_training_epoch_alone_or_out_of_range(
    tmp_path, capsys
):
    from spzoo.cli import main

    argv = ["train", "gated_sp_resnet", "--dataset", "sklearn_digits"]
    argv += ["--epochs", "3", "--output-dir", str(tmp_path)]
    assert main([*argv, "--threshold-training-from", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "spzoo: error: `threshold_training_from` is the first epoch of "
        "`threshold_training`: give `threshold_training` too."
    )
    argv += ["--threshold-training", "0.5"]
    for bad in ("0", "4"):
        assert main([*argv, "--threshold-training-from", bad]) == 2
        assert capsys.readouterr().err.strip() == (
            "spzoo: error: `threshold_training_from` must be an epoch in 1..3; "
            f"received {bad}."
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_train_threshold_training_from_scratch_trains_batch_norm(tmp_path, capsys):
    import json

    import keras

    from spzoo.cli import main

    spec_path = tmp_path / "tiny_gated_resnet.json"
    spec_path.write_text(json.dumps(SPEC))
    argv = ["train", str(spec_path), "--dataset", "sklearn_digits", "--epochs", "2"]
    argv += ["--steps-per-epoch", "2", "--batch-size", "16", "--seed", "0"]
    argv += ["--threshold-training", "0.5", "--threshold-training-from", "2"]
    assert main([*argv, "--output-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert (
        "--threshold-training 0.5: thresholds none, from epoch 2, the range "
        "measured each epoch; batch norm trains (calibrate its levels afterwards)"
    ) in out
    run = json.loads((tmp_path / "runs" / f"{RUN}.json").read_text())
    drawn = run["recipe"]["threshold_training"]
    assert drawn["min_fraction"] == 0.5 and drawn["from_epoch"] == 2
    assert drawn["batch_norm"].startswith("trained")
    assert (
        "--threshold-training 0.5 --threshold-training-from 2"
        in (run["recipe"]["command"])
    )
    trained = keras.saving.load_model(tmp_path / "runs" / f"{RUN}.keras")
    norms = [
        layer
        for layer in trained.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.trainable for layer in norms)
    assert any(np.abs(n.moving_mean.numpy()).max() > 0 for n in norms)


def test_freeze_batch_norm_runs_it_in_inference_mode():
    import keras

    from spzoo.training.threshold_sampling import freeze_batch_norm

    model = spread_model()
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert freeze_batch_norm(model) == len(norms) > 0
    assert not any(layer.trainable for layer in norms)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    before = [n.moving_mean.numpy().copy() for n in norms]
    model(x, training=True)
    for n, mean in zip(norms, before, strict=True):
        np.testing.assert_array_equal(n.moving_mean.numpy(), mean)
