"""Tests of `SwitchableBatchNormalization`: statistics per threshold level."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from spzoo.layers import (
    HardConcreteGate,
    SwitchableBatchNormalization,
    calibration_scope,
    set_threshold,
    threshold_scope,
)
from spzoo.layers.switchable_batch_norm import from_batch_norm

LEVELS = [1.0, 2.5]


def _layer(**kwargs):
    layer = SwitchableBatchNormalization(LEVELS, **kwargs)
    layer.build((None, 4, 4, 3))
    rng = np.random.default_rng(0)
    layer.gamma.assign(rng.uniform(0.5, 2.0, 3))
    layer.beta.assign(rng.normal(size=3))
    layer.moving_mean.assign(rng.normal(size=(3, 3)))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, (3, 3)))
    return layer


def _numpy(layer, x, row):
    mean = np.asarray(layer.moving_mean)[row]
    var = np.asarray(layer.moving_variance)[row]
    gamma, beta = np.asarray(layer.gamma), np.asarray(layer.beta)
    return gamma * (x - mean) / np.sqrt(var + layer.epsilon) + beta


class SwitchableBatchNormalizationTest(testing.TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            SwitchableBatchNormalization,
            init_kwargs={"levels": [0.5, 2.0], "momentum": 0.9, "threshold": 1.0},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=3,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_each_level_uses_its_own_statistics(self):
        layer = _layer()
        x = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("float32")
        for threshold, row in [(None, 0), (0.99, 0), (1.0, 1), (2.49, 1), (2.5, 2)]:
            expected = _numpy(layer, x, row)
            self.assertAllClose(layer(x, threshold=threshold), expected, atol=1e-5)
            assert layer.row_for(threshold) == row
        with threshold_scope(3.0):
            self.assertAllClose(layer(x), _numpy(layer, x, 2), atol=1e-5)
        layer.set_threshold(1.5)
        self.assertAllClose(layer(x), _numpy(layer, x, 1), atol=1e-5)

    def test_no_levels_is_a_plain_batch_norm(self):
        bn = keras.layers.BatchNormalization(epsilon=1e-3)
        x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32")
        bn.build(x.shape)
        bn.moving_mean.assign([0.1, -0.2, 0.3])
        bn.moving_variance.assign([1.5, 0.5, 2.0])
        bn.gamma.assign([1.1, 0.9, 1.3])
        bn.beta.assign([0.0, 0.5, -0.5])
        bn(keras.Input((4, 4, 3)))
        layer = from_batch_norm(bn, [])
        self.assertAllClose(layer(x), bn(x), atol=1e-6)

    def test_training_updates_only_the_row_in_force(self):
        layer = _layer(momentum=0.5)
        before = np.asarray(layer.moving_mean).copy()
        x = np.random.default_rng(3).normal(2.0, 1.0, (8, 4, 4, 3)).astype("float32")
        layer(x, training=True, threshold=1.7)
        after = np.asarray(layer.moving_mean)
        np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
        expected = 0.5 * before[1] + 0.5 * x.mean(axis=(0, 1, 2))
        np.testing.assert_allclose(after[1], expected, atol=1e-5)

    def test_calibration_scope_collects_batch_moments_and_normalises_with_them(self):
        layer = _layer()
        x = np.random.default_rng(4).normal(3.0, 2.0, (8, 4, 4, 3)).astype("float32")
        with calibration_scope() as moments:
            y = layer(x)
        ((mean, var),) = moments[layer.name]
        np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-4)
        np.testing.assert_allclose(var, x.var(axis=(0, 1, 2)), atol=1e-3)
        np.testing.assert_allclose(
            np.asarray(y).mean(axis=(0, 1, 2)), layer.beta, atol=1e-4
        )

    def test_calibration_refuses_a_traced_call(self):
        layer = _layer()
        x = np.zeros((2, 4, 4, 3), "float32")
        with calibration_scope(), pytest.raises(RuntimeError, match="eager"):
            tf.function(lambda v: layer(v))(x)

    def test_set_threshold_reaches_gates_and_switchable_batch_norm(self):
        inputs = keras.Input((4, 4, 3))
        y = SwitchableBatchNormalization(LEVELS, name="sbn")(inputs)
        model = keras.Model(inputs, y)
        gate = HardConcreteGate()
        gate.build((3,))
        model.gate = gate  # tracked as a sub-layer
        assert set_threshold(model, 2.0) == 1
        assert model.get_layer("sbn").row_for(2.0) == 1
        assert float(model.get_layer("sbn").threshold.numpy()) == 2.0
        assert float(gate.threshold.numpy()) == 2.0
        set_threshold(model, None)
        assert float(model.get_layer("sbn").threshold.numpy()) == -math.inf

    def test_affine_matches_the_layer(self):
        layer = _layer()
        x = np.random.default_rng(5).normal(size=(1, 4, 4, 3)).astype("float32")
        for row, threshold in enumerate([None, 1.0, 2.5]):
            scale, shift = layer.affine(row)
            self.assertAllClose(
                layer(x, threshold=threshold), scale * x + shift, atol=1e-5
            )

    def test_from_batch_norm_copies_every_level(self):
        inputs = keras.Input((4, 4, 3))
        bn = keras.layers.BatchNormalization(momentum=0.9, name="bn")
        bn(inputs)
        bn.moving_mean.assign([0.1, 0.2, 0.3])
        layer = from_batch_norm(bn, LEVELS)
        assert layer.name == "bn" and layer.momentum == 0.9 and layer.rows == 3
        np.testing.assert_allclose(np.asarray(layer.moving_mean), [[0.1, 0.2, 0.3]] * 3)

    def test_saved_and_loaded_keeps_levels_and_statistics(self):
        inputs = keras.Input((4, 4, 3))
        layer = SwitchableBatchNormalization(LEVELS, name="sbn")
        model = keras.Model(inputs, layer(inputs))
        model.get_layer("sbn").moving_mean.assign(np.arange(9.0).reshape(3, 3))
        path = self.get_temp_dir() + "/m.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        x = np.ones((1, 4, 4, 3), "float32")
        set_threshold(model, 2.0)
        set_threshold(loaded, 2.0)
        self.assertAllClose(loaded(x), model(x))
        assert loaded.get_layer("sbn").levels == LEVELS


@pytest.mark.parametrize(
    "levels", [[2.0, 1.0], [1.0, 1.0], [float("nan")], [float("-inf"), 1.0], "1,2"]
)
def test_bad_levels_name_the_argument(levels):
    with pytest.raises(ValueError) as info:
        SwitchableBatchNormalization(levels)
    assert str(info.value) == (
        "`levels` must be a list of finite, strictly increasing thresholds; "
        f"received {levels!r}."
    )


def test_bad_momentum_and_row():
    with pytest.raises(ValueError, match=r"`momentum` must be a number in \[0, 1\)"):
        SwitchableBatchNormalization([1.0], momentum=1.0)
    layer = _layer()
    with pytest.raises(ValueError, match=r"`row` must be in \[0, 3\); received 3"):
        layer.affine(3)


def test_mixed_precision_keeps_float32_statistics():
    layer = SwitchableBatchNormalization([1.0], dtype="mixed_bfloat16")
    x = np.random.default_rng(6).normal(2.0, 1.0, (4, 4, 4, 3)).astype("float32")
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert layer.moving_mean.dtype == "float32" and layer.gamma.dtype == "float32"
    # Keras casts the input to bfloat16 before the call: the moments are of
    # the rounded input (relative error about 3e-4 here).
    np.testing.assert_allclose(
        np.asarray(layer.moving_mean)[0], 0.01 * x.mean(axis=(0, 1, 2)), rtol=2e-3
    )
