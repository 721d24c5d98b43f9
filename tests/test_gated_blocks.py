"""Block gates of residual networks: PresynapticGate, ChannelGate, their MACs."""

import keras
import numpy as np
import pytest

import spzoo.models
from spzoo.blocks.residual import channel_costs, check_gate
from spzoo.layers import ChannelGate, PresynapticGate, set_threshold, threshold_scope
from spzoo.metrics import macs
from spzoo.metrics.gated import gate_blocks

SPEC = {
    "family": "resnet",
    "name": "tiny_gated_resnet",
    "stem_filters": 16,
    "cell": "conv",
    "gate": {"input_dependent": False, "mac_weighted": True, "sparsity_weight": 0.5},
    "stacks": [
        {
            "blocks": 1,
            "filters": 16,
            "kernels": {"1": 0.25, "3": 0.5, "5": 0.25},
            "neuron": [0.5, 0.25, 0.25],
        },
        {"blocks": 1, "filters": 32, "kernels": {"3": 1.0}, "neuron": "max"},
    ],
}
X = np.random.default_rng(0).uniform(size=(4, 12, 12, 1)).astype("float32")


def tiny(**gate):
    return spzoo.models.build(
        {**SPEC, "gate": {**SPEC["gate"], **gate}}, (12, 12, 1), 3
    )


def spread(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, PresynapticGate):
            layer.presynaptic_bias.assign(
                rng.normal(0.5, 2.0, layer.filters).astype("float32")
                / layer.log_alpha_scale
            )
            if layer.input_dependent:
                shape = layer.presynaptic_kernel.shape
                layer.presynaptic_kernel.assign(
                    rng.normal(0, 3.0, shape).astype("float32")
                )


def test_presynaptic_gate_static_and_dynamic():
    static = PresynapticGate(4, input_dependent=False, log_alpha_scale=2.0)
    z = static(np.ones((3, 5, 5, 2), "float32"), training=False)
    assert z.shape == (3, 4)
    static.presynaptic_bias.assign([-3.0, -0.5, 0.5, 3.0])  # log-alpha -6 .. 6
    np.testing.assert_allclose(static.static_log_alpha(), [-6, -1, 1, 6])
    gate = static.static_gate(threshold=0.0)
    assert gate[0] == 0 and gate[1] == 0 and gate[2] > 0 and gate[3] == 1
    assert static.macs() == 0 and static.is_static
    dynamic = PresynapticGate(4)
    dynamic(np.ones((1, 5, 5, 2), "float32"))
    assert dynamic.macs() == 2 * 4 and not dynamic.is_static
    with pytest.raises(ValueError, match="input-dependent gates"):
        dynamic.static_log_alpha()


def test_presynaptic_gate_config_round_trip():
    layer = PresynapticGate(
        3,
        input_dependent=False,
        sparsity_weight=0.1,
        log_alpha_scale=4.0,
        threshold=1.5,
        costs=[1.0, 2.0, 3.0],
        cost_scale=12.0,
        name="g",
    )
    clone = PresynapticGate.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(clone.l0_weights(), [1 / 12, 2 / 12, 3 / 12])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0}, "`filters` must be an int >= 1"),
        ({"filters": 2, "costs": [1.0]}, "`costs` must hold 2 finite numbers"),
        ({"filters": 2, "cost_scale": 0.0}, "`cost_scale` must be a finite number"),
        ({"filters": 2, "log_alpha_scale": -1.0}, "`log_alpha_scale` must be"),
    ],
)
def test_presynaptic_gate_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PresynapticGate(**kwargs)


def test_check_gate_names_the_bad_option():
    assert check_gate(None) is None and check_gate({}) == {}
    with pytest.raises(ValueError, match=r"unknown options \['colour'\]"):
        check_gate({"colour": 1})
    with pytest.raises(ValueError, match="mac_weighted"):
        check_gate({"mac_weighted": "yes"})
    with pytest.raises(ValueError, match="Invalid `gate`"):
        check_gate({"sparsity_weight": -1.0})
    with pytest.raises(ValueError, match=r"spec\['stacks'\]\[0\]\['gate'\]"):
        spzoo.models.check_spec(
            {**SPEC, "stacks": [{**SPEC["stacks"][0], "gate": {"beta": -1}}]}
        )


def test_channel_gate_zeroes_closed_channels():
    x = np.ones((2, 3, 3, 4), "float32")
    z = np.array([[1, 0, 0.5, 0], [0, 1, 1, 1]], "float32")
    y = np.asarray(ChannelGate()([x, z]))
    np.testing.assert_array_equal(y[:, 0, 0, :], z)


def test_gated_block_layout_keeps_ungated_names():
    model = tiny()
    names = {layer.name for layer in model.layers}
    assert {"stack1_block1_gate", "stack1_block1_op2_gated"} <= names
    plain = spzoo.models.build({**SPEC, "gate": None}, (12, 12, 1), 3)
    plain_names = {layer.name for layer in plain.layers}
    # Every layer of the ungated network exists, under the same name and
    # shapes, in the gated one: weights carry over by name.
    assert plain_names <= names
    for layer in plain.layers:
        other = model.get_layer(layer.name)
        assert [w.shape for w in layer.weights] == [w.shape for w in other.weights]
    (block1, block2) = gate_blocks(model)
    assert [(c.name, a, b) for c, a, b in block1.outputs] == [
        ("stack1_block1_op1_conv1x1", 0, 4),
        ("stack1_block1_op1_conv3x3", 4, 12),
        ("stack1_block1_op1_conv5x5", 12, 16),
    ]
    assert [c.name for c in block2.inputs] == ["stack2_block1_op2_conv3x3"]


def test_cost_weighted_l0_loss_is_the_expected_mac_fraction():
    model = tiny()
    gate = model.get_layer("stack1_block1_gate")
    costs = channel_costs((None, 12, 12, 16), 16, [1, 3, 5], [4, 8, 4])
    assert gate.costs == costs
    assert costs[0] == 12 * 12 * (1 * 16) + 12 * 12 * (4 * 1 + 8 * 9 + 4 * 25)
    assert gate.cost_scale == macs(model)
    model(X, training=True)
    loss = float(sum(model.losses))
    gated = sum(sum(g.costs) for g in (b.gate for b in gate_blocks(model)))
    p_open = 1 / (1 + np.exp(-(2.0 - 2 / 3 * np.log(0.1 / 1.1))))  # la = 2
    assert loss == pytest.approx(0.5 * p_open * gated / macs(model), rel=1e-4)


def test_expected_macs_follow_the_open_channels():
    model = tiny()
    gate = model.get_layer("stack1_block1_gate")
    closed = np.zeros(16, bool)
    closed[[0, 5, 6, 15]] = True  # one 1x1, two 3x3, one 5x5 channel
    gate.presynaptic_bias.assign(np.where(closed, -10.0, 10.0).astype("float32"))
    full = macs(model)
    area = 12 * 12
    saved = area * 16 * (1 * 1 + 2 * 9 + 1 * 25)  # their first-conv outputs
    second = area * 16 * (4 * 1 + 8 * 9 + 4 * 25)  # second conv, all inputs
    saved += second * 4 / 16
    assert macs(model, threshold=-np.inf) == pytest.approx(full - saved)
    # The Keras model really zeroes them where the second convolution reads.
    probe = keras.Model(model.inputs, model.get_layer("stack1_block1_op2_gated").output)
    out = np.asarray(probe(X, training=False))
    assert np.all(out[..., closed] == 0) and np.any(out[..., ~closed] != 0)


@pytest.mark.slow
def test_threshold_changes_logits_and_dynamic_gates_need_data():
    model = tiny()
    spread(model)
    low = np.asarray(model(X, training=False))
    with threshold_scope(1.0):
        high = np.asarray(model(X, training=False))
    assert np.abs(low - high).max() > 1e-4
    assert macs(model, threshold=1.0) < macs(model, threshold=-np.inf)
    dynamic = tiny(input_dependent=True)
    with pytest.raises(ValueError, match="`data` is required"):
        macs(dynamic, threshold=0.0)
    spread(dynamic)
    assert macs(dynamic, threshold=2.0, data=X) < macs(dynamic, data=X)


def test_gated_model_saves_and_loads(tmp_path):
    model = tiny(input_dependent=True)
    spread(model)
    set_threshold(model, 0.5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        np.asarray(loaded(X, training=False)),
        np.asarray(model(X, training=False)),
        atol=1e-6,
    )
    gate = loaded.get_layer("stack1_block1_gate")
    assert gate.get_config() == model.get_layer("stack1_block1_gate").get_config()
    assert gate.gate.get_threshold() == 0.5


@pytest.mark.slow
def test_shipped_gated_specs_build():
    for name in ("gated_sp_resnet", "gated_sp_resnet_dynamic"):
        model = spzoo.models.build(name, (28, 28, 1), 10)
        blocks = gate_blocks(model)
        assert len(blocks) == 9
        assert all(b.gate.is_static != name.endswith("dynamic") for b in blocks)
    plain = spzoo.models.build("sp_resnet", (28, 28, 1), 10)
    gated = spzoo.models.build("gated_sp_resnet", (28, 28, 1), 10)
    assert macs(gated) == macs(plain)  # static gates cost no MACs
