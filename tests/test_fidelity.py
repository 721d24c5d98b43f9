"""Issue 19: the papers' readings offered beside spzoo's defaults.

One test (or a few) per row of docs/fidelity.md that has an option; tiny
shapes, NumPy checks against the papers' formulas and structure.
"""

import numpy as np
import pytest

from spzoo.layers import PrunableNeuronLayer, split_channels
from spzoo.layers.prunable_neuron_layer import arrange_types
from spzoo.models import build, get_spec


def _type_counts_per_kernel(types, kernel_counts):
    out, start = [], 0
    for count in kernel_counts:
        block = np.asarray(types[start : start + count])
        out.append([int((block == t).sum()) for t in range(3)])
        start += count
    return out


def test_interleaved_arrangement_spreads_each_type_over_every_kernel_size():
    """Item 1: with the SP-ResNet's stack-1 shares, contiguous blocks put
    every coincidence neuron on a 7x7 channel; interleaved gives every
    kernel size each type within one channel of the stack's proportions."""
    fractions = (0.45, 0.40, 0.15)
    channels = 48
    counts = split_channels(channels, fractions)
    kernels = split_channels(channels, [0.2, 0.4, 0.2, 0.2])  # 1, 3, 5, 7
    blocks = _type_counts_per_kernel(arrange_types(counts, "blocks"), kernels)
    assert [row[2] for row in blocks] == [0, 0, 0, counts[2]]  # 7x7 only
    interleaved = arrange_types(counts, "interleaved")
    assert np.bincount(interleaved, minlength=3).tolist() == counts
    for size, row in zip(
        kernels, _type_counts_per_kernel(interleaved, kernels), strict=True
    ):
        expected = np.asarray(fractions) * size
        assert np.all(np.abs(np.asarray(row) - expected) <= 1.0), (row, expected)


def test_interleaved_layer_computes_each_channel_by_its_type():
    layer = PrunableNeuronLayer((0.5, 0.25, 0.25), arrangement="interleaved")
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 8)).astype("float32")
    y = np.asarray(layer(x))
    x2 = np.zeros_like(x)
    x2[:, :-1, :-1, :] = x[:, 1:, 1:, :]  # neighbour, zero border
    g = np.maximum(np.tanh(x2), 0)
    relu = np.maximum(x, 0)
    expected = {
        "relu": relu,
        "max": relu + np.maximum(-x, 0) * g,
        "coincidence": relu * g,
    }
    types = layer.neuron_types()
    assert types != sorted(types, key=["relu", "max", "coincidence"].index)
    for c, kind in enumerate(types):
        np.testing.assert_allclose(y[..., c], expected[kind][..., c], atol=1e-6)
    clone = PrunableNeuronLayer.from_config(layer.get_config())
    assert clone.arrangement == "interleaved"
    assert "arrangement" not in PrunableNeuronLayer().get_config()
    with pytest.raises(ValueError, match="`arrangement` must be one of"):
        PrunableNeuronLayer(arrangement="random")


def test_sp_resnet_interleaved_spec_same_size_other_placement():
    plain = build("sp_resnet", (8, 8, 1), 3)
    inter = build("sp_resnet_interleaved", (8, 8, 1), 3)
    assert plain.count_params() == inter.count_params()
    a = plain.get_layer("stack1_block1_op2_neuron")
    b = inter.get_layer("stack1_block1_op2_neuron")
    assert a.type_counts == b.type_counts
    # The last 9 of 48 channels are the 7x7 outputs of the block's first Op.
    assert a.neuron_types()[:-9].count("coincidence") == 0
    assert len(set(b.neuron_types()[-9:])) == 3
    spec = get_spec("sp_resnet_interleaved")
    base = get_spec("sp_resnet")
    for s, t in zip(spec["stacks"], base["stacks"], strict=True):
        assert s["neuron"]["fractions"] == t["neuron"]
        assert s["kernels"] == t["kernels"]


def test_three_reductions_add_one_reduction_after_the_last_stack():
    """Item 2: `"reductions": "after_every_stack"` reads Fig. 8a's "three
    (residual block x N_B - reduction layer) stacks" literally."""
    spec = {
        "stem_filters": 2,
        "stacks": [{"blocks": 1, "filters": f} for f in (2, 4, 8)],
    }
    two = build(spec, (16, 16, 1), 3)
    three = build({**spec, "reductions": "after_every_stack"}, (16, 16, 1), 3)
    names = {layer.name for layer in three.layers} - {
        layer.name for layer in two.layers
    }
    assert names == {
        "stack3_reduction_conv",
        "stack3_reduction_bn",
        "stack3_reduction_neuron",
    }
    conv = three.get_layer("stack3_reduction_conv")
    assert conv.kernel.shape == (3, 3, 8, 16) and conv.strides == (2, 2)
    assert three.get_layer("head_pool").input.shape[1:] == (2, 2, 16)
    extra = 3 * 3 * 8 * 16 + 4 * 16 + 4 * (16 - 8) + (16 - 8) * 3  # no conv bias
    assert three.count_params() - two.count_params() == extra
    with pytest.raises(ValueError, match=r"spec\['reductions'\]"):
        build({**spec, "reductions": 3}, (16, 16, 1), 3)


def test_threshold_scale_and_open_probability():
    """Item 4: under the test-time estimator every log-alpha below
    log(-gamma/zeta) ~ -2.4 is a closed gate, so thresholds below it (the
    paper's -7) change nothing; a threshold given as the gates' probability
    of being open means the same for every model."""
    from spzoo.layers import (
        HardConcreteGate,
        closed_bound,
        open_probability,
        threshold_for_open_probability,
    )

    bound = closed_bound()
    assert bound == pytest.approx(np.log(0.1 / 1.1)) and -2.41 < bound < -2.39
    gate = HardConcreteGate()
    log_alpha = np.linspace(-9, 4, 27).astype("float32")
    none = np.asarray(gate(log_alpha))
    assert np.all(none[log_alpha < bound] == 0) and np.all(none[log_alpha > bound] > 0)
    for t in (-7.0, -3.0, bound - 1e-3):
        np.testing.assert_array_equal(np.asarray(gate(log_alpha, threshold=t)), none)
    # P(z != 0) against the sampler, in NumPy (Louizos et al., eq. 12).
    rng = np.random.default_rng(0)
    u = rng.uniform(1e-6, 1 - 1e-6, size=(200_000, 1))
    la = np.array([-3.0, -1.6, 0.0, 2.0])
    s = 1 / (1 + np.exp(-(np.log(u) - np.log1p(-u) + la) / (2 / 3)))
    z = np.clip(s * 1.2 - 0.1, 0, 1)
    np.testing.assert_allclose((z > 0).mean(0), open_probability(la), atol=0.005)
    for p in (0.05, 0.31, 0.5, 0.9):
        t = threshold_for_open_probability(p)
        assert open_probability(t) == pytest.approx(p)
    assert threshold_for_open_probability(0.5) == pytest.approx(2 / 3 * bound)
    assert threshold_for_open_probability(0) is None
    assert threshold_for_open_probability(1) == np.inf
    with pytest.raises(ValueError, match="`probability` must be a number in"):
        threshold_for_open_probability(1.5)


def test_lds_direction_threshold_keeps_the_highest_standard_deviations():
    """Item 5: the paper's "standard deviation thresholds" for directions."""
    from spzoo.tuners.location_direction import generate_direction

    stds = {
        "addon_0_2_k3": np.arange(20, dtype="float64").reshape(4, 5)[::-1],
        "addon_1_2_k5": np.linspace(1, 0, 10).reshape(2, 5),
    }
    addons = [(0, 2, 3), (1, 2, 5)]
    rng = np.random.default_rng(0)
    masks = generate_direction(addons, stds, 0.1, rng, rule="threshold")
    for name, s in stds.items():
        keep = max(1, round(0.1 * s.size))
        mask = masks[name]
        assert mask.shape == s.shape and mask.sum() == keep
        assert s[mask == 1].min() >= s[mask == 0].max()
    again = generate_direction(addons, stds, 0.1, np.random.default_rng(1), "threshold")
    for name in stds:
        np.testing.assert_array_equal(masks[name], again[name])
    sampled = generate_direction(addons, stds, 0.5, rng)  # default: drawn
    assert all(sampled[n].sum() == round(0.5 * stds[n].size) for n in stds)
    with pytest.raises(ValueError, match="`direction_rule` must be one of"):
        generate_direction(addons, stds, 0.1, rng, rule="top")


def test_pruning_scope_all_scores_and_removes_every_prunable_layer():
    """Item 3: scope "all" prunes the first Ops', reductions' and head's PLs
    too (by channel mask), scoring each neuron by the kernel it feeds where
    no single kernel feeds it."""
    import keras

    from spzoo.models import build_resnet
    from spzoo.tuners.pruning import (
        importance,
        importance_shares,
        initial_spec,
        masked_channels,
        prune_step,
    )

    keras.utils.set_random_seed(0)
    spec = initial_spec(1, blocks_per_stack=1)  # 3 / 6 / 12 channels
    model = build_resnet(spec, (8, 8, 1), 3)
    inner = importance(model, spec)
    every = importance(model, spec, scope="all")
    assert set(inner) == {"stack1_block1", "stack2_block1", "stack3_block1"}
    assert set(every) - set(inner) == {
        "stack1_block1_op1_neuron",
        "stack2_block1_op1_neuron",
        "stack3_block1_op1_neuron",
        "stack1_reduction_neuron",
        "stack2_reduction_neuron",
        "head_neuron",
    }
    w = np.asarray(model.get_layer("stack2_block1_op1_conv3x3").kernel, dtype="float64")
    np.testing.assert_allclose(
        every["stack2_block1_op1_neuron"][0], np.mean(w**2, axis=(0, 1, 3))
    )
    w = np.asarray(model.get_layer("stack1_reduction_conv").kernel, dtype="float64")
    np.testing.assert_allclose(
        every["stack1_reduction_neuron"][0], np.mean(w**2, axis=(0, 1, 2))
    )
    w = np.asarray(model.get_layer("logits").kernel, dtype="float64")
    np.testing.assert_allclose(every["head_neuron"][0], np.mean(w**2, axis=1))

    # Remove the 10 lowest of all neurons, then 10 more: never a removed
    # one again, each layer keeps one, inner ones go physically.
    phi = sorted(
        (float(v), k, c) for k, (p, _) in every.items() for c, v in enumerate(p)
    )
    child, child_spec, removed, _ = prune_step(
        model, spec, (8, 8, 1), 3, 10, scope="all"
    )
    assert sum(map(len, removed.values())) == 10
    gone = masked_channels(child, child_spec)
    for key, channels in removed.items():
        if key in gone:
            assert set(channels) <= gone[key]
            layer = child.get_layer(key)
            assert np.all(np.asarray(layer.channel_mask)[channels] == 0)
    assert any(key.endswith("_neuron") for key in removed)
    chosen = {(k, c) for k, cs in removed.items() for c in cs}
    assert chosen <= {(k, c) for _, k, c in phi[:12]}  # lowest, but each keeps one
    grand, grand_spec, again, _ = prune_step(
        child, child_spec, (8, 8, 1), 3, 10, scope="all"
    )
    for key, channels in again.items():
        assert not set(channels) & gone.get(key, set())
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    assert np.all(np.isfinite(np.asarray(grand(x))))
    record = {
        k: {"phi": p.tolist(), "types": t}
        for k, (p, t) in importance(grand, grand_spec, scope="all").items()
    }
    shares = importance_shares(record)
    assert sorted(shares) == [1, 2, 3]
    assert all(sum(v.values()) == pytest.approx(1) for v in shares.values())


def test_table1_width_rule_matches_the_printed_audio_widths():
    """Item 6: Table I's audio N_F (Commands: 85,000 examples, 20 filters)
    is the formula without the channel factor; `width_rule="table1"`
    applies it, the default keeps the formula as written."""
    from types import SimpleNamespace

    from spzoo.data.scaling import table1_scale
    from spzoo.tuners.budget import search_settings

    commands = SimpleNamespace(
        name="commands",
        modality="audio",
        input_shape=(32, 32, 1),
        sizes={"train": 85_000},
    )
    assert table1_scale(commands, "table1").num_filters == 21  # Table I: 20
    assert table1_scale(commands).num_filters == 7  # with C_DS / C_C = 1/3
    assert search_settings(commands, "paper").filters == 7
    assert search_settings(commands, "paper", "table1").filters == 21
    image = SimpleNamespace(
        name="grey", modality="image", input_shape=(28, 28, 1), sizes={"train": 50_000}
    )
    assert table1_scale(image, "table1") == table1_scale(image, "formula")
    with pytest.raises(ValueError, match="`width_rule` must be one of"):
        table1_scale(commands, "paper")


def test_command_line_offers_the_papers_readings():
    from spzoo.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        [
            "search",
            "pruning",
            "--dataset",
            "sklearn_digits",
            "--scope",
            "all",
            "--width-rule",
            "table1",
        ]
    )
    assert (args.scope, args.width_rule) == ("all", "table1")
    args = parser.parse_args(["search", "growth", "--dataset", "sklearn_digits"])
    assert args.width_rule == "formula"
    args = parser.parse_args(
        ["search", "nhn", "--dataset", "fashion_mnist", "--direction-rule", "threshold"]
    )
    assert args.direction_rule == "threshold"
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "pruning", "--dataset", "x", "--scope", "some"])


def test_interleaved_network_exports_to_onnx_with_parity(tmp_path):
    """The ONNX builder reads each channel's gains, so the interleaved
    placement exports like the contiguous one."""
    import keras

    from spzoo import export

    neuron = {"type": "prunable", "fractions": [0.5, 0.25, 0.25]}
    spec = {
        "name": "tiny_interleaved",
        "stem_filters": 8,
        "stacks": [
            {
                "blocks": 1,
                "filters": 16,
                "kernels": {"1": 0.25, "3": 0.5, "7": 0.25},
                "neuron": {**neuron, "arrangement": "interleaved"},
            }
        ],
    }
    keras.utils.set_random_seed(0)
    model = build(spec, (8, 8, 1), 10)
    report = export.export(model, tmp_path / "m.onnx", dataset="sklearn_digits")
    assert report.parity and all(r.passed for r in report.parity)


@pytest.mark.slow
def test_bench_pruning_variants_run_end_to_end(tmp_path, bench_script):
    """`python bench/fidelity.py pruning` at the tiny budget, scope "all"
    through the KerasTuner oracle and tuner (the other two variants run the
    default code paths that tests/test_tuners_pruning.py covers)."""
    fidelity = bench_script("fidelity")
    record = fidelity.pruning(
        0, budget="tiny", iterations=1, run_dir=tmp_path, variants=("scope_all",)
    )
    assert set(record["variants"]) == {"scope_all"}
    assert record["variants"]["scope_all"]["scope"] == "all"
    for variant in record["variants"].values():
        assert variant["iterations"] >= 0
        assert sorted(variant["final_importance_shares"]) == ["1", "2", "3"] or (
            sorted(variant["final_importance_shares"]) == [1, 2, 3]
        )
