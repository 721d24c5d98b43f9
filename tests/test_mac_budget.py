"""`spzoo.training.budget.close_to_budget` and `spzoo train --mac-budget`."""

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


@pytest.mark.slow
def test_train_mac_budget_fine_tunes_the_zoo_model_at_the_budget(
    one_model_zoo, tmp_path, capsys
):
    import json

    import keras

    from spzoo.cli import main

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
    argv += ["--steps-per-epoch", "2", "--batch-size", "16", "--lr", "1e-9"]
    argv += ["--init-from", "tiny.sklearn_digits", "--mac-budget", "0.6"]
    argv += ["--output-dir", str(tmp_path / "runs")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--mac-budget 0.6: closed " in out
    name = "tiny_gated_resnet.sklearn_digits"
    run = json.loads((tmp_path / "runs" / f"{name}.json").read_text())
    budget = run["recipe"]["mac_budget"]
    assert budget["mac_budget"] == 0.6 and budget["macs_fraction"] <= 0.6
    assert run["recipe"]["init_from"]["head"] is True  # 10 classes: kept
    command = run["recipe"]["command"]
    assert "--init-from tiny.sklearn_digits --mac-budget 0.6" in command
    trained = keras.saving.load_model(tmp_path / "runs" / f"{name}.keras")
    assert macs(trained, threshold=-np.inf) <= 0.6 * macs(trained)
