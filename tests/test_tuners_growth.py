"""Growth NAS: search space, aging evolution invariants on a synthetic objective."""

import json
import random

import numpy as np
import pytest
from keras_tuner.engine import trial as trial_module

from spzoo import metrics, models
from spzoo.tuners.growth_oracle import GrowthOracle, epsilon, fit_tradeoff
from spzoo.tuners.growth_space import (
    GrowthSpace,
    check_growth_spec,
    height,
    leaves,
    num_ops,
    spec_ops,
    width,
)


def synthetic(spec):
    """A cheap objective: accuracy and 'params' from the op counts (no training)."""
    ops = spec_ops(spec)
    kernels = sum(
        int(op[0]) ** 2
        for blocks in spec["stacks"]
        for block in blocks
        for _, op, _ in leaves(block, 1)
        if op != "none"
    )
    return 0.5 + 0.4 * (1 - np.exp(-ops / 20)), 1000.0 + 50.0 * kernels


def synthetic_metrics(values: dict) -> dict:
    """What a growth trial reports, from `synthetic` of its architecture."""
    accuracy, params = synthetic(json.loads(values["architecture"]))
    return {"val_accuracy": accuracy, "params": params}


def make_oracle(tmp_path, name="p", **kwargs):
    settings = dict(
        population_size=6,
        sample_size=3,
        num_iterations=30,
        max_ops=200,
        initial_growth=3,
        seed=7,
    )
    settings.update(kwargs)
    oracle = GrowthOracle(GrowthSpace(filters=4, blocks_per_stack=2), **settings)
    oracle._set_project_dir(str(tmp_path), name)
    return oracle


def test_growth_procedures_shape_the_graph():
    space = GrowthSpace(filters=8, blocks_per_stack=1, ops=("5x5",))
    rng = random.Random(0)
    block = "3x3"
    for _ in range(6):
        grown = space.grow_block(block, 8, rng)
        # Branching adds two ops (depth + 1), Splitting one (width + 1).
        assert num_ops(grown) - num_ops(block) in (1, 2)
        assert height(grown) - height(block) in (0, 1)
        block = grown
    assert height({"seq": ["3x3", {"concat": ["1x1", "none"]}]}) == 2
    assert width({"add": ["3x3", {"add": ["5x5", "1x1"]}]}, 8) == 3.0
    assert width({"seq": ["3x3", {"concat": ["1x1", "7x7"]}]}, 8) == 1.0
    # Branching needs two filters per path: a 1-filter space can only split.
    with pytest.raises(ValueError, match="no legal growth step"):
        GrowthSpace(filters=1, procedures=("branching",))


def test_random_spec_builds_and_is_deterministic():
    space = GrowthSpace(filters=2, blocks_per_stack=1)
    a = space.random_spec(random.Random("s-1"), 4)
    b = space.random_spec(random.Random("s-1"), 4)
    assert a == b
    assert check_growth_spec(space.to_json(a)) == a
    model = models.build(a, (8, 8, 1), 3)
    again = models.build(json.loads(space.to_json(a)), (8, 8, 1), 3)
    assert metrics.count_params(model) == metrics.count_params(again)
    assert [w.shape for w in model.weights] == [w.shape for w in again.weights]


def test_aging_evolution_invariants(tmp_path, drive_oracle):
    oracle = make_oracle(tmp_path)
    seen = []

    def check(o, trial_id):
        history = o.history()
        assert len(o.population()) <= o.population_size
        assert o.population() == history[-o.population_size :]
        origin = o.origins[trial_id]
        if origin["parent"] is not None:
            assert origin["parent"] in origin["sample"]
            assert len(origin["sample"]) == o.sample_size
            assert set(origin["sample"]) <= set(seen[-o.population_size :])
            assert origin["parent"] == max(origin["sample"], key=o.epsilon_of)
            parent = o.architecture(origin["parent"])
            child = o.architecture(trial_id)
            assert spec_ops(child) >= spec_ops(parent)
        seen.append(trial_id)

    status = drive_oracle(oracle, synthetic_metrics, 40, check)
    assert status == trial_module.TrialStatus.STOPPED  # n_iter = 30 reached
    history = oracle.history()
    assert len(history) == 30
    # The oldest leaves: after child i, the population starts at history[i + 1].
    assert oracle.population() == history[-6:]
    assert history[0] not in oracle.population()
    # Initial population: random models, no parent.
    assert all(oracle.origins[t]["parent"] is None for t in history[:6])
    assert all(oracle.origins[t]["parent"] is not None for t in history[6:])


def test_fitted_k_equals_independent_least_squares(tmp_path, drive_oracle):
    oracle = make_oracle(tmp_path)
    drive_oracle(oracle, synthetic_metrics, 6)
    assert oracle.k is not None
    accuracy, params = zip(
        *(oracle.metrics_of(t) for t in oracle.history()), strict=True
    )
    alpha_bar = np.array(accuracy) / np.mean(accuracy)
    eta_bar = np.array(params) / np.mean(params)
    expected, *_ = np.linalg.lstsq(
        np.log(eta_bar)[:, None], -np.log(alpha_bar), rcond=None
    )
    np.testing.assert_allclose(oracle.k, expected[0], rtol=1e-9)
    # The initial population is rescored with epsilon once k is known.
    for t in oracle.history():
        a, p = oracle.metrics_of(t)
        assert oracle.trials[t].score == pytest.approx(
            epsilon(a, p, oracle.k, oracle.alpha_init, oracle.eta_init)
        )
    assert fit_tradeoff([0.5, 0.5], [10, 10])[0] == 0.0


def test_state_survives_reload(tmp_path, drive_oracle):
    oracle = make_oracle(tmp_path)
    drive_oracle(oracle, synthetic_metrics, 12)
    reloaded = make_oracle(tmp_path)
    reloaded.reload()
    assert reloaded.k == oracle.k
    assert reloaded.origins == oracle.origins
    assert reloaded.history() == oracle.history()
    # Both continue with the same next child (seeded by trial id).
    a = oracle.create_trial("tuner0").hyperparameters.values["architecture"]
    b = reloaded.create_trial("tuner0").hyperparameters.values["architecture"]
    assert a == b
    other = GrowthOracle(GrowthSpace(filters=8, blocks_per_stack=2), 6, 3, 30, seed=7)
    other._set_project_dir(str(tmp_path), "p")
    with pytest.raises(ValueError, match="used the space"):
        other.reload()


def test_stops_when_a_child_exceeds_max_ops(tmp_path, drive_oracle):
    oracle = make_oracle(tmp_path, max_ops=40, initial_growth=2)
    status = drive_oracle(oracle, synthetic_metrics, 200)
    assert status == trial_module.TrialStatus.STOPPED
    assert "n_op_max=40" in oracle.stop_reason
    assert len(oracle.history()) < 30 or oracle.stop_reason


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(population_size=5, sample_size=6), "n\\(S\\)=6 must be <="),
        (dict(population_size=0), "population_size"),
        (dict(num_iterations=3, population_size=5, sample_size=2), "n_iter=3"),
        (dict(search_blocks=99), "search_blocks"),
        (dict(max_ops=1), "n_op_max=1"),
    ],
)
def test_bad_oracle_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GrowthOracle(GrowthSpace(filters=4, blocks_per_stack=2), **kwargs)


def test_bad_spaces_and_inputs():
    with pytest.raises(ValueError, match="ops"):
        GrowthSpace(ops=("9x9",))
    with pytest.raises(ValueError, match="at least one conv op"):
        GrowthSpace(ops=("none",))
    with pytest.raises(ValueError, match="too small"):
        models.build(GrowthSpace(filters=2).initial_spec(), (7, 28, 1), 10)
    with pytest.raises(ValueError, match="unknown key"):
        check_growth_spec(
            {"filters": 2, "blocks_per_stack": 1, "stacks": [[{"mul": []}]] * 3}
        )
