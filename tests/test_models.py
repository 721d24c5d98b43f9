"""Ops, blocks and the Table II builders."""

import json

import keras
import numpy as np
import pytest
from keras import layers

from spzoo.blocks import (
    kxk_op,
    mixed_kernel_op,
    none_op,
    reduction_layer,
    residual_block,
)
from spzoo.layers import PrunableNeuronLayer, TrainableNeuronLayer
from spzoo.metrics import count_params, macs
from spzoo.models import (
    FAMILIES,
    build,
    check,
    family_of,
    get_spec,
    list_architectures,
    resnet_spec,
)

TABLE_II = [
    "resnet_3_32",
    "resnet_3_48",
    "resnet_3_64",
    "resnet_2_48",
    "resnet_4_48",
    "resnet_struct",
    "resnet_op",
    "sp_resnet",
]


def test_every_table_ii_design_is_shipped_as_a_json_spec():
    assert set(TABLE_II) <= set(list_architectures())
    for name in TABLE_II:
        json.dumps(get_spec(name))  # specs are plain data


def test_every_family_has_check_and_build_in_the_one_registry():
    assert {"resnet", "gated_cnn", "growth", "nhn"} <= set(FAMILIES)
    for name in list_architectures():
        spec = get_spec(name)
        family = family_of(spec)
        assert family is FAMILIES[spec.get("family", "resnet")]
        checked = check(spec)
        assert checked is not spec and check(checked) == checked
        assert get_spec(name) == spec  # the check works on a copy
    with pytest.raises(ValueError, match="family 'nope'"):
        check({"family": "nope"})


def test_kxk_op_order_and_shapes():
    inputs = keras.Input((8, 8, 4))
    outputs = kxk_op(inputs, 6, kernel_size=5, neuron="max", name="op")
    model = keras.Model(inputs, outputs)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["BatchNormalization", "MaxNeuron", "Conv2D"]
    assert model.layers[-1].kernel.shape == (5, 5, 4, 6)
    assert outputs.shape == (None, 8, 8, 6)
    assert none_op(inputs) is inputs


def test_mixed_kernel_op_splits_channels_by_fractions():
    inputs = keras.Input((8, 8, 4))
    outputs = mixed_kernel_op(
        inputs, 10, {"1": 0.2, "3": 0.4, "5": 0.2, "7": 0.2}, neuron="relu"
    )
    model = keras.Model(inputs, outputs)
    convs = {
        layer.kernel.shape[0]: layer.filters
        for layer in model.layers
        if isinstance(layer, layers.Conv2D)
    }
    assert convs == {1: 2, 3: 4, 5: 2, 7: 2}
    assert outputs.shape == (None, 8, 8, 10)
    # A zero fraction drops that kernel size.
    outputs = mixed_kernel_op(inputs, 10, {1: 0.3, 3: 0.7, 5: 0.0})
    sizes = sorted(
        layer.kernel.shape[0]
        for layer in keras.Model(inputs, outputs).layers
        if isinstance(layer, layers.Conv2D)
    )
    assert sizes == [1, 3]


def test_reduction_layer_and_residual_block():
    inputs = keras.Input((8, 8, 4))
    x = reduction_layer(inputs, 8, neuron=[0.5, 0.25, 0.25])
    assert x.shape == (None, 4, 4, 8)
    y = residual_block(x, 8, neuron="trainable", name="same")
    z = residual_block(y, 12, name="wider")
    model = keras.Model(inputs, z)
    names = [layer.name for layer in model.layers]
    assert "same_shortcut" not in names  # identity shortcut
    assert "wider_shortcut" in names  # 1x1 conv where the shapes differ
    assert model.get_layer("wider_shortcut").kernel.shape == (1, 1, 8, 12)
    assert z.shape == (None, 4, 4, 12)
    # Residual: with the second op's convolution zeroed, the block is its shortcut.
    conv = model.get_layer("same_op2_conv3x3")
    conv.kernel.assign(np.zeros(conv.kernel.shape))
    probe = keras.Model(inputs, [x, y])
    a, b = probe(np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32"))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_resnet_block_parameter_count_matches_the_formula():
    small = build(resnet_spec(1, 8), (16, 16, 3), 10)
    large = build(resnet_spec(2, 8), (16, 16, 3), 10)
    # One more residual block per stack: two 3x3 convs and two BNs (4 * C
    # weights each: gamma, beta, moving mean and variance) per stack.
    expected = sum(2 * (9 * c * c) + 2 * 4 * c for c in (8, 16, 32))
    assert count_params(large) - count_params(small) == expected


def test_sp_resnet_structure():
    model = build("sp_resnet", (16, 16, 1), 7)
    assert model.output.shape == (None, 7)
    spec = get_spec("sp_resnet")
    assert [s["blocks"] * 2 for s in spec["stacks"]] == [6, 8, 4]
    assert [s["filters"] for s in spec["stacks"]] == [48, 96, 144]
    # (c) kernel mix in stack 1 and (e) neuron mix in stack 1.
    conv_sizes = {
        layer.kernel.shape[0]: layer.filters
        for layer in model.layers
        if layer.name.startswith("stack1_block1_op1_conv")
    }
    assert conv_sizes == {1: 10, 3: 19, 5: 10, 7: 9}  # 20/40/20/20% of 48
    neuron = model.get_layer("stack1_block1_op2_neuron")
    assert isinstance(neuron, PrunableNeuronLayer)
    assert neuron.type_counts == [22, 19, 7]  # 45% / 40% / 15% of 48
    assert (
        model.get_layer("stack3_block2_op2_conv3x3").filters
        + model.get_layer("stack3_block2_op2_conv1x1").filters
        == 144
    )
    assert macs(model) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", TABLE_II)
def test_every_design_builds_for_any_input_shape_and_class_count(name):
    model = build(name, (12, 10, 2), 3)
    assert model.output.shape == (None, 3)
    x = np.zeros((1, 12, 10, 2), "float32")
    assert np.all(np.isfinite(model(x)))


@pytest.mark.slow
def test_a_training_step_on_a_tiny_trainable_neuron_resnet():
    model = build(
        resnet_spec(1, 4, {"type": "trainable", "weight_scale": 10.0}), (8, 8, 1), 3
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tl = [layer for layer in model.layers if isinstance(layer, TrainableNeuronLayer)]
    before = [layer.mixture_weights() for layer in tl]
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 3
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [layer.mixture_weights() for layer in tl]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_spec_errors_name_the_argument():
    spec = resnet_spec(1, 8)
    bad = json.loads(json.dumps(spec))
    bad["stacks"][0]["kernels"] = {"9": 1.0}
    with pytest.raises(ValueError, match=r"kernels.*unknown kernel size"):
        build(bad, (8, 8, 1), 2)
    bad = json.loads(json.dumps(spec))
    bad["stacks"][1]["filters"] = 0
    with pytest.raises(ValueError, match=r"\['filters'\]` must be an int >= 1"):
        build(bad, (8, 8, 1), 2)
    bad = json.loads(json.dumps(spec))
    bad["stacks"][2]["neuron"] = [0.5, 0.6, 0.1]
    with pytest.raises(ValueError, match=r"neuron.*sum to 1"):
        build(bad, (8, 8, 1), 2)
    bad = json.loads(json.dumps(spec))
    bad["stacks"][0]["kernels"] = {"3": 0.5, "5": 0.2}
    with pytest.raises(ValueError, match="sum to 1"):
        build(bad, (8, 8, 1), 2)
    with pytest.raises(ValueError, match="Unknown architecture 'nope'"):
        build("nope", (8, 8, 1), 2)
    with pytest.raises(ValueError, match="input_shape"):
        build(spec, (8, 8), 2)
    with pytest.raises(ValueError, match="num_classes"):
        build(spec, (8, 8, 1), 1)
    with pytest.raises(ValueError, match="Unknown `neuron`"):
        kxk_op(keras.Input((4, 4, 2)), 2, neuron="tanh")
    with pytest.raises(ValueError, match="filters"):
        mixed_kernel_op(keras.Input((4, 4, 2)), 0, {3: 1.0})
