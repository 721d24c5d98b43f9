"""Batch-norm statistics per threshold level: conversion and calibration."""

import keras
import numpy as np
import pytest
from test_gated_fine_tuning import SPEC  # the tiny gated ResNet of these tests

import spzoo.models
from spzoo.layers import PresynapticGate, SwitchableBatchNormalization, set_threshold
from spzoo.metrics.gated import gate_blocks
from spzoo.training.bn_calibration import (
    calibrate_batch_norm,
    model_levels,
    switchable_batch_norm,
    switchable_layers,
    threshold_levels,
)


@pytest.fixture(scope="module")
def gated():
    model = spzoo.models.build(SPEC, (8, 8, 1), 3)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, PresynapticGate):
            log_alpha = rng.normal(2.0, 2.0, layer.filters).astype("float32")
            layer.presynaptic_bias.assign(log_alpha / layer.log_alpha_scale)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_mean.shape))
    return model


def _x(n, seed=1):
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


def test_levels_are_increasing_thresholds_that_close_channels(gated):
    levels = threshold_levels(gated)
    assert levels and levels == sorted(set(levels))
    set_threshold(gated, None)
    full = spzoo.metrics.macs(gated, threshold=-np.inf)
    costs = [spzoo.metrics.macs(gated, threshold=t) for t in levels]
    assert all(c < full for c in costs)
    assert costs == sorted(costs, reverse=True)


def test_conversion_computes_the_same_at_every_threshold(gated):
    levels = threshold_levels(gated)
    converted = switchable_batch_norm(gated, levels)
    bns = [
        layer
        for layer in gated.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    switchable = [
        layer
        for layer in converted.layers
        if isinstance(layer, SwitchableBatchNormalization)
    ]
    assert len(switchable) == len(bns) > 0
    assert model_levels(converted) == levels
    assert len(gate_blocks(converted)) == len(gate_blocks(gated))
    x = _x(16)
    for threshold in [None, *levels, levels[-1] + 0.5]:
        set_threshold(gated, threshold)
        set_threshold(converted, threshold)
        np.testing.assert_allclose(
            converted(x, training=False), gated(x, training=False), atol=1e-5
        )
    set_threshold(gated, None)


def test_calibration_sets_each_level_from_its_own_activations(gated):
    levels = threshold_levels(gated)
    model = switchable_batch_norm(gated, levels)
    set_threshold(model, 1.25)
    lines = []
    x = _x(64)
    report = calibrate_batch_norm(model, x, batch_size=32, progress=lines.append)
    assert report == {"levels": levels, "examples": 64, "batches": 2, "kept": []}
    assert len(lines) == len(levels) + 1 and "level 0 (threshold none)" in lines[0]
    assert float(model.get_layer("stack1_block1_op1_bn").threshold.numpy()) == 1.25
    # The stem's batch norm reads the stem convolution, before any gate: the
    # same statistics at every level, those of x.
    stem = [
        layer
        for layer in model.layers
        if isinstance(layer, SwitchableBatchNormalization)
    ][0]
    inputs = keras.Model(model.inputs, stem.input)(x).numpy()
    mean = np.asarray(stem.moving_mean)
    np.testing.assert_allclose(
        mean, np.tile(inputs.mean((0, 1, 2)), (len(mean), 1)), atol=1e-4
    )
    var = np.asarray(stem.moving_variance)
    np.testing.assert_allclose(var[0], inputs.var((0, 1, 2)), rtol=1e-3, atol=1e-5)
    # After the first gate, levels differ: more channels closed, other moments.
    later = [
        layer
        for layer in model.layers
        if isinstance(layer, SwitchableBatchNormalization)
    ][-1]
    rows = np.asarray(later.moving_mean)
    assert not np.allclose(rows[0], rows[-1])
    # In inference, level j uses its statistics: at each level's threshold the
    # batch norm's output over x has mean beta (the calibration's data), up
    # to the earlier batch norms normalising with their batch's moments
    # during calibration and with the level's averages here (0.006 seen).
    for row, threshold in enumerate([None, *levels]):
        set_threshold(model, threshold)
        before = keras.Model(model.inputs, later.input)(x).numpy()
        out = later(before).numpy().mean((0, 1, 2))
        np.testing.assert_allclose(out, np.asarray(later.beta), atol=2e-2)
        assert later.row_for(threshold) == row


def test_kept_levels_keep_their_statistics(gated):
    levels = threshold_levels(gated)
    model = switchable_batch_norm(gated, levels)
    later = switchable_layers(model)[-1]
    before = np.asarray(later.moving_mean).copy()
    lines = []
    keep = [None, levels[0]]
    report = calibrate_batch_norm(model, _x(64), 32, lines.append, keep=keep)
    assert report["kept"] == keep
    assert lines[:2] == [
        "batch norm level 0 (threshold none): kept",
        f"batch norm level 1 (threshold {levels[0]:.4g}): kept",
    ]
    mean = np.asarray(later.moving_mean)
    np.testing.assert_array_equal(mean[:2], before[:2])
    assert not np.allclose(mean[-1], before[-1])
    with pytest.raises(ValueError) as info:
        calibrate_batch_norm(model, _x(64), 32, keep=[123.0])
    assert str(info.value) == (
        f"`keep` must hold levels of the model ({levels}) or None; received [123.0]."
    )


def test_bad_calls_are_refused(gated):
    with pytest.raises(ValueError, match="has no `SwitchableBatchNormalization`"):
        calibrate_batch_norm(gated, _x(8), batch_size=4)
    model = switchable_batch_norm(gated, [1.0])
    with pytest.raises(ValueError, match="already has switchable batch norms"):
        switchable_batch_norm(model, [1.0])
    with pytest.raises(ValueError) as info:
        calibrate_batch_norm(model, _x(8), batch_size=16)
    assert str(info.value) == (
        "`x` must hold at least `batch_size` (16) examples; received 8."
    )
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 2"):
        calibrate_batch_norm(model, _x(8), batch_size=1)
