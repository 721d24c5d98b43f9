"""Pruning NAS: physical neuron removal, selection, oracle chain; statistics."""

import json
import os

import numpy as np
import pytest
from keras_tuner.engine import trial as trial_module

from spzoo import metrics
from spzoo.models import build_resnet
from spzoo.training import atomic_write_text
from spzoo.tuners.growth_oracle import GrowthOracle
from spzoo.tuners.growth_space import GrowthSpace, spec_ops
from spzoo.tuners.pruning import (
    PruningOracle,
    finetune_optimizer,
    importance,
    importance_shares,
    initial_spec,
    prune_network,
    select_neurons,
)
from spzoo.tuners.statistics import analyze, growth_statistics


def test_pruned_model_is_smaller_and_equals_the_masked_model():
    spec = initial_spec(2, blocks_per_stack=1)
    model = build_resnet(spec, (8, 8, 1), 3)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "bn" in layer.name:
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )
    remove = {"stack1_block1": [0, 3], "stack3_block1": [5]}
    pruned, new_spec = prune_network(model, spec, (8, 8, 1), 3, remove)
    assert new_spec["stacks"][0]["inner_neurons"] == [[1, 1, 2]]
    assert new_spec["stacks"][2]["inner_neurons"] == [
        [7, 8, 8]
    ]  # channel 5 of 24 is a ReLU neuron
    assert spec["stacks"][0]["inner_neurons"] == [[2, 2, 2]]  # not modified
    assert metrics.count_params(pruned) < metrics.count_params(model)
    assert pruned.get_layer("stack1_block1_op1_conv3x3").kernel.shape[-1] == 4
    # Removing neurons == masking them in the original network.
    for prefix, channels in remove.items():
        model.get_layer(f"{prefix}_op2_neuron").prune(channels)
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    scores = importance(pruned, new_spec)
    assert scores["stack1_block1"][1] == ["relu", "max", "coincidence", "coincidence"]


def test_select_neurons_lowest_importance_each_layer_keeps_one():
    scores = {
        "a": (np.array([0.5, 0.1, 0.9]), ["relu", "max", "coincidence"]),
        "b": (np.array([0.05]), ["relu"]),
        "c": (np.array([0.2, 0.01]), ["relu", "max"]),
    }
    assert select_neurons(scores, 2) == {"a": [1], "c": [1]}
    chosen = select_neurons(scores, 3)
    assert "b" not in chosen and sum(map(len, chosen.values())) == 3
    assert all(len(v) < scores[k][0].size for k, v in chosen.items())


def test_finetune_schedule_two_phases():
    optimizer = finetune_optimizer(5)
    schedule = optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(2e-3)
    assert float(schedule(6)) == pytest.approx(4e-4)


def drive(oracle, accuracies, removable=100):
    for accuracy in accuracies:
        trial = oracle.create_trial("tuner0")
        if trial.status != trial_module.TrialStatus.RUNNING:
            return trial.status
        # One iteration at a time: a second tuner waits (or stops at the end).
        assert oracle.create_trial("tuner1").status in ("IDLE", "STOPPED")
        oracle.update_trial(
            trial.trial_id,
            {"val_accuracy": accuracy, "params": 1.0, "removable": float(removable)},
        )
        trial.status = trial_module.TrialStatus.COMPLETED
        oracle.end_trial(trial)
    return oracle.create_trial("tuner0").status


def test_oracle_stops_on_accuracy_drop_and_reloads(tmp_path):
    spec = initial_spec(2, 1)
    oracle = PruningOracle(spec, num_iterations=10, num_remove=2, max_drop=0.02, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    status = drive(oracle, [0.90, 0.91, 0.885, 0.87])
    assert status == trial_module.TrialStatus.STOPPED
    assert oracle.chain == ["00", "01", "02"]  # the 0.87 iteration is rejected
    assert "fell more than 0.020" in oracle.stop_reason
    values = oracle.trials["02"].hyperparameters.values
    assert values["parent"] == "01" and values["iteration"] == 2
    again = PruningOracle(spec, num_iterations=10, num_remove=2, max_drop=0.02)
    again._set_project_dir(str(tmp_path), "p")
    again.reload()
    assert again.chain == oracle.chain and again.stop_reason == oracle.stop_reason


def test_oracle_stops_at_n_iter_and_bad_input(tmp_path):
    spec = initial_spec(2, 1)
    oracle = PruningOracle(spec, num_iterations=2, num_remove=1, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    assert drive(oracle, [0.5, 0.5, 0.5, 0.5]) == trial_module.TrialStatus.STOPPED
    assert len(oracle.chain) == 3 and "n_iter=2" in oracle.stop_reason
    more = PruningOracle(spec, num_iterations=4, num_remove=1, seed=1)
    more._set_project_dir(str(tmp_path), "p")
    more.reload()  # a larger n_iter continues the finished search
    assert more.stop_reason is None
    assert more.create_trial("tuner0").hyperparameters.values["iteration"] == 3
    with pytest.raises(ValueError, match="N_R=999"):
        PruningOracle(spec, num_remove=999)
    with pytest.raises(ValueError, match="max_drop"):
        PruningOracle(spec, max_drop=2)
    with pytest.raises(ValueError, match="inner_neurons"):
        PruningOracle(build_spec_without_inner())
    with pytest.raises(ValueError, match="importance"):
        PruningOracle(spec, importance="l1")
    # The measure travels with each trial; resuming with another one fails.
    fan_in = PruningOracle(spec, num_iterations=4, importance="l2_fan_in", seed=1)
    fan_in._set_project_dir(str(tmp_path), "q")
    assert fan_in.create_trial("t").hyperparameters.values["importance"] == (
        "l2_fan_in"
    )
    fan_in.save()
    other = PruningOracle(spec, num_iterations=4, seed=1)
    other._set_project_dir(str(tmp_path), "q")
    with pytest.raises(ValueError, match="importance"):
        other.reload()


def build_spec_without_inner():
    spec = initial_spec(2, 1)
    for stack in spec["stacks"]:
        del stack["inner_neurons"]
    return spec


def test_analyze_writes_tables_and_plots(tmp_path, drive_oracle):
    growth = GrowthOracle(
        GrowthSpace(filters=4, blocks_per_stack=2),
        population_size=6,
        sample_size=3,
        num_iterations=30,
        max_ops=200,
        initial_growth=3,
        seed=7,
    )
    growth._set_project_dir(str(tmp_path / "run"), "growth")

    def growth_metrics(values):  # more conv ops: more accurate and larger
        ops = spec_ops(json.loads(values["architecture"]))
        return {"val_accuracy": 0.5 + 0.01 * ops, "params": 1000.0 + 40.0 * ops}

    drive_oracle(growth, growth_metrics, 12)
    spec = initial_spec(2, 1)
    oracle = PruningOracle(spec, num_iterations=3, num_remove=1, seed=1)
    oracle._set_project_dir(str(tmp_path / "run"), "pruning")
    drive(oracle, [0.9, 0.9])
    for i, trial_id in enumerate(oracle.chain):
        record = {
            "iteration": i,
            "val_accuracy": 0.9,
            "params": 100 - i,
            "neurons": 42 - i,
            "importance": {
                "stack1_block1": {
                    "phi": [3.0, 1.0, 1.0, 1.0, 2.0, 2.0],
                    "types": [
                        "relu",
                        "relu",
                        "max",
                        "max",
                        "coincidence",
                        "coincidence",
                    ],
                }
            },
        }
        path = os.path.join(oracle._get_trial_dir(trial_id), "pruning.json")
        atomic_write_text(path, json.dumps(record))
    written = analyze(str(tmp_path / "run"), top=3)
    names = {os.path.basename(p) for p in written}
    assert {
        "statistics.md",
        "fig10_height_width.png",
        "fig11_op_shares.png",
        "fig12_importance_shares.png",
    } <= names
    data = json.loads((tmp_path / "run" / "analysis" / "statistics.json").read_text())
    assert data["pruning"]["final"]["shares"]["1"]["relu"] == pytest.approx(0.4)
    assert importance_shares(record["importance"])[1]["coincidence"] == 0.4
    assert len(data["growth"]["top"]) == 3
    shares = data["growth"]["stacks"][0]["op_share"]
    assert sum(shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="holds no growth or pruning"):
        analyze(str(tmp_path))


def test_growth_statistics_of_the_paper_example():
    block = {"seq": [{"add": ["3x3", {"add": ["3x3", "5x5"]}]}, "1x1"]}
    spec = {
        "filters": 4,
        "blocks_per_stack": 1,
        "stacks": [[block], ["3x3"], [{"seq": ["none", "7x7"]}]],
    }
    stats = growth_statistics(spec)
    assert stats[0]["H"] == 2 and stats[0]["W"] == 3.0  # 3x3, 3x3, 5x5 at H = 1
    assert stats[0]["ops"]["3x3"] == 2 and stats[2]["ops"]["none"] == 1
    assert stats[2]["H"] == 1 and stats[2]["W"] == 1.0


def test_search_data_order_depends_on_the_seed_alone():
    """A trial sets TensorFlow's global seed, which `tf.data` combines with a
    shuffle's seed: a second search in one process (as in bench/fidelity.py)
    must still see the data order of a search started from the command line."""
    import keras
    import tensorflow as tf

    from spzoo.tuners.base import search_train_data

    def first_labels():
        return next(iter(search_train_data("sklearn_digits", 64, seed=3)))[1].numpy()

    tf.random.set_seed(None)
    fresh = first_labels()
    keras.utils.set_random_seed(11)  # what a trial does
    assert (first_labels() == fresh).all()
    assert not (
        next(iter(search_train_data("sklearn_digits", 64, seed=4)))[1].numpy() == fresh
    ).all()


def test_two_search_train_sets_reshuffle_alike_when_interleaved():
    """bench/growth_inherit.py gives each arm its own set: trial n of either
    arm sees the same batches, whatever the other arm did in between."""
    import keras

    from spzoo.tuners.base import search_train_data

    a = search_train_data("sklearn_digits", 64, seed=3)
    b = search_train_data("sklearn_digits", 64, seed=3)

    def epoch(data):
        return [y.numpy() for _, y in data]

    first_a = epoch(a)
    keras.utils.set_random_seed(11)  # a trial of the other arm
    second_a = epoch(a)
    first_b, second_b = epoch(b), epoch(b)
    assert all((u == v).all() for u, v in zip(first_a, first_b, strict=True))
    assert all((u == v).all() for u, v in zip(second_a, second_b, strict=True))
    assert not all((u == v).all() for u, v in zip(first_a, second_a, strict=True))
