"""The training recipes: coupled weight decay, schedules, the fast recipe."""

import json

import keras
import numpy as np
import pytest

from spzoo import cli
from spzoo.layers import TrainableNeuronLayer
from spzoo.training import (
    FAST,
    PAPER,
    RECIPES,
    CoupledDecaySGD,
    get_recipe,
    make_optimizer,
    make_schedule,
    paper_optimizer,
    train,
)


def _model():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = TrainableNeuronLayer(name="neuron")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs)


def test_paper_sgd_step_is_coupled_weight_decay_through_momentum():
    keras.utils.set_random_seed(1)
    model = _model()
    lr, wd, momentum = 0.01, 5e-4, 0.9
    optimizer = paper_optimizer(100, initial_lr=lr, momentum=momentum, weight_decay=wd)
    variables = model.trainable_variables
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    before = [np.array(v) for v in variables]
    # Two steps: the second one checks the momentum term too.
    optimizer.apply(grads, variables)
    optimizer.apply(grads, variables)
    decayed = []
    for v, w0, g in zip(variables, before, grads, strict=True):
        name = v.path
        no_decay = any(k in name for k in ("gamma", "beta", "bias", "mixture_logits"))
        coeff = 0.0 if no_decay else wd
        # From zero velocity: v1 = -lr (g + wd w0); w1 = w0 + v1;
        # v2 = m v1 - lr (g + wd w1); w2 = w1 + v2.
        v1 = -lr * (g + coeff * w0)
        w1 = w0 + v1
        v2 = momentum * v1 - lr * (g + coeff * w1)
        expected = w1 + v2
        np.testing.assert_allclose(np.array(v), expected, rtol=1e-6, atol=1e-7)
        if not no_decay:
            decayed.append(name)
    assert any("conv/kernel" in n for n in decayed)
    assert any("head/kernel" in n for n in decayed)
    assert not any(
        "gamma" in n or "mixture_logits" in n or "bias" in n for n in decayed
    )


def test_one_step_without_momentum_is_w_minus_lr_g_plus_wd_w():
    v = keras.Variable(np.array([1.0, -2.0], "float32"), name="kernel")
    optimizer = CoupledDecaySGD(
        learning_rate=0.1, momentum=0.9, coupled_weight_decay=0.5
    )
    g = np.array([0.3, 0.4], "float32")
    optimizer.apply([g], [v])
    np.testing.assert_allclose(
        np.array(v), [1.0, -2.0] - 0.1 * (g + 0.5 * np.array([1.0, -2.0])), rtol=1e-6
    )


def test_coupled_decay_refuses_keras_decoupled_weight_decay():
    with pytest.raises(ValueError, match="takes `coupled_weight_decay`"):
        CoupledDecaySGD(weight_decay=1e-4)
    with pytest.raises(
        ValueError, match="`coupled_weight_decay` must be a finite number >= 0"
    ):
        CoupledDecaySGD(coupled_weight_decay=float("nan"))


def test_coupled_decay_round_trips_its_config():
    optimizer = CoupledDecaySGD(
        0.05, momentum=0.9, nesterov=True, coupled_weight_decay=2e-4
    )
    clone = CoupledDecaySGD.from_config(optimizer.get_config())
    assert clone.coupled_weight_decay == 2e-4
    assert clone.nesterov
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, CoupledDecaySGD)


def test_fast_schedule_warms_up_then_decays_to_zero():
    schedule = make_schedule(FAST, total_steps=100, steps_per_epoch=50)
    values = [float(schedule(s)) for s in (0, 5, 10, 55, 100)]
    assert values[0] == pytest.approx(0.0)
    assert values[1] == pytest.approx(0.05)
    assert values[2] == pytest.approx(0.1)
    assert 0 < values[3] < 0.1
    assert values[4] == pytest.approx(0.0, abs=1e-7)


def test_nhn_recipe_clips_by_global_norm_with_coupled_l2():
    from spzoo.tuners.macro_search import nhn_optimizer

    optimizer = nhn_optimizer(100)
    assert isinstance(optimizer, CoupledDecaySGD)
    assert optimizer.global_clipnorm == 5.0 and optimizer.clipnorm is None
    assert optimizer.coupled_weight_decay == 2e-4 and optimizer.nesterov
    lrs = [float(optimizer.learning_rate) for _ in range(1)]
    assert lrs[0] == pytest.approx(0.05)
    schedule = make_schedule(get_recipe("nhn"), 100)
    assert float(schedule(100)) == pytest.approx(0.001)


def test_recipes_are_recorded_and_named_in_the_cli():
    assert set(RECIPES) == set(cli.RECIPE_NAMES)
    assert PAPER.to_dict()["weight_decay_form"] == "coupled"
    assert get_recipe("fast") is FAST
    with pytest.raises(
        ValueError,
        match=r"`recipe` must be one of \['fast', 'nhn', 'paper'\]; received 'slow'",
    ):
        get_recipe("slow")
    assert isinstance(make_optimizer("fast", 10), CoupledDecaySGD)


def test_bad_learning_rate_is_refused_with_the_option_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(
            ["train", "cnn_reference", "--dataset", "sklearn_digits", "--lr", "nan"]
        )
    assert raised.value.code == 2
    assert (
        "--lr: expected a positive finite number, got 'nan'" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        cli.main(
            [
                "train",
                "cnn_reference",
                "--dataset",
                "sklearn_digits",
                "--recipe",
                "slow",
            ]
        )
    assert "--recipe: invalid choice: 'slow'" in capsys.readouterr().err
    with pytest.raises(
        ValueError, match="`initial_lr` must be a positive finite number; received -1"
    ):
        train("cnn_reference", "sklearn_digits", initial_lr=-1, output_dir=tmp_path)


@pytest.mark.slow
def test_diverging_run_writes_nothing_over_an_existing_model(tmp_path):
    existing = tmp_path / "cnn_reference.sklearn_digits.keras"
    existing.write_bytes(b"an earlier model")
    with pytest.raises(ValueError, match="diverged"):
        train(
            "cnn_reference",
            "sklearn_digits",
            epochs=1,
            steps_per_epoch=3,
            output_dir=tmp_path,
            initial_lr=1e30,
            verbose=0,
        )
    assert existing.read_bytes() == b"an earlier model"
    assert not (tmp_path / "cnn_reference.sklearn_digits.json").exists()


@pytest.mark.slow
def test_fast_recipe_trains_in_bfloat16_and_ships_float32(tmp_path):
    result = train(
        "cnn_reference",
        "sklearn_digits",
        epochs=2,
        steps_per_epoch=3,
        output_dir=tmp_path,
        recipe="fast",
        verbose=0,
    )
    assert result["recipe"]["name"] == "fast"
    assert result["recipe"]["precision"] == "mixed_bfloat16"
    assert result["recipe"]["command"] == (
        "spzoo train cnn_reference --dataset sklearn_digits --recipe fast "
        "--epochs 2 --seed 0"
    )
    model = keras.models.load_model(result["model_path"])
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)
    record = json.loads((tmp_path / "cnn_reference.sklearn_digits.json").read_text())
    assert record["eval_accuracy"] == result["eval_accuracy"]
