"""NHN: SmoothInit, the macro family, DNP, LDS with shared weights, score."""

import json
import random

import keras
import numpy as np
import pytest

from spzoo import metrics
from spzoo.layers import SmoothInit, WholeMapDepthwisePooling, smooth_kernels
from spzoo.models import build
from spzoo.models.nhn import build_nhn
from spzoo.models.nhn import check as check_spec
from spzoo.nhn import copy_weights, effective_params, kernel_std, prune
from spzoo.tuners import location_direction as lds
from spzoo.tuners.macro_search import MacroSearchOracle, MacroSpace


def test_smooth_init_equals_gaussian_smoothed_initial_kernels():
    shape = (5, 5, 2, 3)
    smooth = SmoothInit(keras.initializers.HeNormal(seed=3), sigma=0.8)(shape)
    initial = keras.initializers.HeNormal(seed=3)(shape)
    expected = smooth_kernels(keras.ops.convert_to_numpy(initial), 0.8)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(smooth), expected, atol=1e-6)
    # One tap by hand: the centre of a 3x3 kernel.
    w = np.random.default_rng(0).normal(size=(3, 3, 1, 1)).astype("float32")
    u = np.arange(-1, 2)
    g = np.exp(-(u[:, None] ** 2 + u[None] ** 2) / (2 * 0.8**2))
    g /= g.sum()
    assert smooth_kernels(w)[1, 1, 0, 0] == pytest.approx(
        float((g * w[..., 0, 0]).sum())
    )


def test_model_kernels_are_smoothed_and_head_starts_as_gap(tiny_nhn):
    spec, shape = tiny_nhn.spec, tiny_nhn.shape
    model = build_nhn(spec, shape, 3)
    assert isinstance(model.get_layer("l0_conv").kernel_initializer, SmoothInit)
    x = np.random.default_rng(0).random((2, 4, 4, 5)).astype("float32")
    y = WholeMapDepthwisePooling()(x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), atol=1e-6)


def test_dnp_removes_exactly_the_kernels_below_threshold_and_matches_masked(tiny_nhn):
    spec, shape = tiny_nhn.spec, tiny_nhn.shape
    model = tiny_nhn.trained_like()
    stds = kernel_std(model, spec)
    values = np.concatenate([s.ravel() for s in stds.values()])
    threshold = float(np.quantile(values, 0.7))
    small, pruned, masked_spec, result = prune(model, spec, threshold, shape, 3)
    assert result["removed_kernels"] == int((values < threshold).sum())
    for i, s in stds.items():
        kept = result["kernel_masks"][i]
        assert not kept[s < threshold].any()  # every kernel below is gone
        assert (s[kept] >= threshold).all()
    masked = build_nhn(masked_spec, shape, 3)
    copy_weights(model, masked)
    x = np.random.default_rng(1).random((4, *shape)).astype("float32")
    np.testing.assert_allclose(pruned(x), masked(x), atol=1e-5)
    # Physically smaller: fewer channels and parameters.
    assert sum(small["layers"][i]["channels"] for i in stds) < 6 * len(stds)
    assert metrics.count_params(pruned) < metrics.count_params(model)
    assert effective_params(pruned) < effective_params(model)


def test_spec_errors_and_registry(tiny_nhn):
    spec, shape = tiny_nhn.spec, tiny_nhn.shape
    bad = json.loads(json.dumps(spec))
    bad["layers"][3]["skips"] = [1]  # across segments
    with pytest.raises(ValueError, match="same segment"):
        check_spec(bad)
    bad = dict(spec, addons=[{"from": 4, "to": 3, "kernel": 3}])
    with pytest.raises(ValueError, match="earlier layer"):
        check_spec(bad)
    assert build(spec, shape, 3).output.shape == (None, 3)


def test_macro_space_samples_valid_specs():
    space = MacroSpace(num_layers=6, num_segments=3, filters=4, skip_prob=1.0)
    spec = space.random_spec(random.Random(0))
    check_spec(spec)
    assert spec["layers"][3]["skips"] == []  # first layer of a segment
    assert spec["layers"][1]["skips"] == []  # the previous layer is the input
    oracle = MacroSearchOracle(space, max_trials=2, seed=1)
    a = oracle.populate_space("1")["values"]["architecture"]
    assert a == oracle.populate_space("1")["values"]["architecture"]


def test_gene_validation_and_generation(tiny_nhn):
    spec = tiny_nhn.spec
    with pytest.raises(ValueError, match="length"):
        lds.check_gene([-1] * 5, spec)
    with pytest.raises(ValueError, match="earlier layer"):
        lds.check_gene([-1, 2] + [-1] * 10, spec)  # later layer
    with pytest.raises(ValueError, match="same segment"):
        lds.check_gene([-1] * 4 + [1] + [-1] * 7, spec)  # across segments
    rng = random.Random(0)
    genes = [lds.generate_location(spec, rng, 0.8) for _ in range(300)]
    for g in genes:
        lds.check_gene(g, spec)
    possible = [
        v for g in genes for j, v in enumerate(g) if lds.gene_sources(spec, j % 6)
    ]
    assert 0.7 < np.mean([v == -1 for v in possible]) < 0.9
    with pytest.raises(ValueError, match="population_size"):
        lds.LocationDirectionOracle(spec, population_size=0)
    with pytest.raises(ValueError, match="sparsity"):
        lds.LocationDirectionOracle(spec, sparsity=1.5)
    with pytest.raises(ValueError, match="sparsity"):
        lds.generate_direction([], {}, 0.0, np.random.default_rng(0))


def test_recombine_uses_the_papers_five_pairs():
    parents = [[k] * 12 for k in range(4)]  # gene values identify the parent
    children = lds.recombine(parents, random.Random(0))
    assert [pair for _, pair in children] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    for child, (i, j) in children:
        assert set(child) <= {i, j}
    with pytest.raises(ValueError, match="best 4"):
        lds.recombine(parents[:3], random.Random(0))


def test_shared_addon_weights_exist_once(tiny_nhn):
    spec, shape = tiny_nhn.spec, tiny_nhn.shape
    base = tiny_nhn.trained_like()
    shared = lds.SharedAddOns(spec, base, shape, 3, total_steps=10)
    weights = shared.weights()
    assert len(weights) == len(lds.all_addons(spec))
    name = "addon_0_2_k3"
    gene_a = [-1, -1, 0, -1, -1, -1] + [-1] * 6
    gene_b = [-1, -1, 0, -1, -1, 4] + [-1, 0, -1, -1, -1, -1]  # shares 0->2 3x3
    before = {n: w.numpy().copy() for n, w in weights.items()}
    base_before = shared.model.get_layer("l0_conv").kernel.numpy().copy()
    shared.assign(gene_a)
    rng = np.random.default_rng(0)
    x, y = rng.random((20, *shape)).astype("float32"), rng.integers(0, 3, 20)
    shared.train(x, y, batch_size=10)
    trained = shared.model.get_layer(name).kernel
    assert not np.allclose(trained.numpy(), before[name])  # it trained
    for n, w in shared.weights().items():
        if n != name:
            np.testing.assert_array_equal(w.numpy(), before[n])  # others did not
    np.testing.assert_array_equal(
        shared.model.get_layer("l0_conv").kernel.numpy(), base_before
    )  # existing weights are frozen
    shared.assign(gene_b)
    assert shared.weights()[name] is trained  # the same variable, same values
    mask = shared.model.get_layer(name).connection_mask.numpy()
    assert mask.all()
    assert not shared.model.get_layer("addon_0_2_k5").connection_mask.numpy().any()


@pytest.mark.slow
def test_location_direction_search_cycles(tmp_path, capsys, tiny_nhn):
    spec, shape = tiny_nhn.spec, tiny_nhn.shape
    base = tiny_nhn.trained_like()
    shared = lds.SharedAddOns(spec, base, shape, 3, total_steps=40)
    oracle = lds.LocationDirectionOracle(
        spec, population_size=10, location_cycles=2, direction_cycles=1, seed=0
    )
    rng = np.random.default_rng(0)
    data = (
        rng.random((40, *shape)).astype("float32"),
        rng.integers(0, 3, 40),
        rng.random((20, *shape)).astype("float32"),
        rng.integers(0, 3, 20),
    )
    tuner = lds.LDSTuner(
        oracle,
        shared,
        data,
        steps=1,
        batch_size=4,
        eval_batch_size=5,
        directory=str(tmp_path),
        progress=True,
        project_name="lds",
    )
    tuner.search(verbose=0)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("LDS ")]
    assert len(lines) == 30
    assert lines[0].startswith("LDS location cycle 1/2, member 1/10: accuracy ")
    assert lines[-1].startswith("LDS direction cycle 1/1, member 10/10: ")
    assert oracle.phase == "done"
    assert [c["phase"] for c in oracle.log] == ["location", "location", "direction"]
    assert len(oracle.trials) == 30
    lds.check_gene(oracle.best_location, spec)
    # Resume: a new oracle on the same directory reloads the finished search.
    again = lds.LocationDirectionOracle(
        spec, population_size=10, location_cycles=2, direction_cycles=1, seed=0
    )
    lds.LDSTuner(
        again,
        shared,
        data,
        steps=1,
        batch_size=4,
        eval_batch_size=5,
        directory=str(tmp_path),
        project_name="lds",
    ).search(verbose=0)
    # Members are ranked by their gain over the frozen base on their own eval
    # slice: zero for a gene without add-ons, accuracy minus the base's else.
    for trial in oracle.trials.values():
        gene = json.loads(trial.hyperparameters.values[lds.CANDIDATE])["gene"]
        gain = trial.metrics.get_last_value(lds.GAIN)
        accuracy = trial.metrics.get_last_value(lds.ACCURACY)
        if all(g == -1 for g in gene):
            assert gain == 0.0
        assert -1.0 <= gain <= 1.0 and 0.0 <= accuracy <= 1.0
    ranked = sorted(oracle.log, key=lambda c: c["cycle"])
    assert all("best_score" in c and "best_accuracy" in c for c in ranked)
    assert again.phase == "done" and len(again.trials) == 30
    assert again.best_location == oracle.best_location
    masks = tuner.load_direction(oracle.best_direction["trial"])
    for a, b, k in lds.gene_addons(oracle.best_location, spec):
        m = masks[f"addon_{a}_{b}_k{k}"]
        assert m.sum() == max(1, round(0.1 * m.size))


def test_nhn_score_matches_table_1():
    assert metrics.nhn_score(3.72, 7.0e6) == pytest.approx(1.88, abs=0.005)
    assert metrics.nhn_score(4.23, 21.3e6) == pytest.approx(2.28, abs=0.005)
    with pytest.raises(ValueError, match="error_percent"):
        metrics.nhn_score(101, 1)


@pytest.mark.slow
def test_macro_supernet_evaluates_candidates_with_shared_weights(tmp_path, tiny_nhn):
    shape = tiny_nhn.shape
    import tensorflow as tf

    from spzoo.tuners.macro_search import MacroTuner

    space = MacroSpace(num_layers=3, num_segments=3, filters=4)
    oracle = MacroSearchOracle(space, max_trials=3, seed=0)
    tuner = MacroTuner(
        oracle,
        shape,
        3,
        steps=2,
        supernet=True,
        directory=str(tmp_path),
        project_name="macro",
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((16, *shape)).astype("float32"), rng.integers(0, 3, 16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    before = [w.numpy().copy() for w in tuner.supernet.model.trainable_weights]
    tuner.search(ds, ds, verbose=0)
    assert len(oracle.trials) == 3
    assert (tmp_path / "macro" / "supernet.weights.h5").is_file()
    after = [w.numpy() for w in tuner.supernet.model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    # Evaluating a candidate does not change the shared weights.
    spec = oracle.architecture(oracle.get_best_trials(1)[0].trial_id)
    tuner.supernet.evaluate(spec, ds)
    for a, b in zip(tuner.supernet.model.trainable_weights, after, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
