"""Tests of the hard-concrete gate: sampler statistics, inference, threshold."""

import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from keras.src import testing

from spzoo.layers import HardConcreteGate, get_threshold, set_threshold, threshold_scope

GAMMA, ZETA, BETA = -0.1, 1.1, 2.0 / 3.0
LOG_ALPHAS = np.array([-2.0, 0.0, 1.5], dtype="float32")


def _cdf(q, log_alpha):
    """P(z <= q) for q in (0, 1), the closed form of the hard concrete."""
    logit = BETA * np.log((q - GAMMA) / (ZETA - q)) - log_alpha
    return 1.0 / (1.0 + np.exp(-logit))


def _closed_form_mean(log_alpha):
    """E[z] = integral over (0, 1) of P(z > q) dq (midpoint rule)."""
    q = (np.arange(20000) + 0.5) / 20000
    return float(np.mean(1.0 - _cdf(q, log_alpha)))


def _samples(n=100_000):
    gate = HardConcreteGate(seed=7)
    log_alpha = np.tile(LOG_ALPHAS, (n, 1))
    return gate, np.asarray(gate(log_alpha, training=True))


class HardConcreteGateTest(testing.TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            HardConcreteGate,
            init_kwargs={"sparsity_weight": 0.1, "threshold": -1.0, "seed": 1},
            input_shape=(2, 5),
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=1,
            expected_num_losses=1,
            supports_masking=False,
            run_training_check=False,
        )

    def test_sampled_mean_matches_closed_form(self):
        _, z = _samples()
        for j, log_alpha in enumerate(LOG_ALPHAS):
            self.assertAllClose(z[:, j].mean(), _closed_form_mean(log_alpha), atol=6e-3)
        self.assertTrue(np.all((z >= 0) & (z <= 1)))

    def test_l0_penalty_matches_monte_carlo(self):
        gate, z = _samples()
        penalty = np.asarray(gate.l0_penalty(LOG_ALPHAS))
        closed = 1 / (1 + np.exp(-(LOG_ALPHAS - BETA * math.log(-GAMMA / ZETA))))
        self.assertAllClose(penalty, closed, atol=1e-6)
        self.assertAllClose((z > 0).mean(axis=0), penalty, atol=6e-3)
        # The exact ends of the stretched interval carry probability mass.
        p_one = 1 - _cdf(1.0 - 1e-9, LOG_ALPHAS)
        self.assertAllClose((z == 1).mean(axis=0), p_one, atol=6e-3)

    def test_inference_is_deterministic(self):
        gate = HardConcreteGate(seed=3)
        log_alpha = np.array([[-3.0, -1.0, 0.0, 2.0, 5.0]], dtype="float32")
        first = np.asarray(gate(log_alpha, training=False))
        second = np.asarray(gate(log_alpha))
        expected = np.clip(1 / (1 + np.exp(-log_alpha)) * (ZETA - GAMMA) + GAMMA, 0, 1)
        self.assertAllClose(first, second)
        self.assertAllClose(first, expected, atol=1e-6)
        noisy = [np.asarray(gate(log_alpha, training=True)) for _ in range(3)]
        self.assertFalse(np.allclose(noisy[0], noisy[1]))

    def test_threshold_zeroes_gates_below_it(self):
        gate = HardConcreteGate()
        log_alpha = np.array([[-1.0, 0.0, 1.0, 3.0]], dtype="float32")
        open_ = np.asarray(gate(log_alpha))
        cut = np.asarray(gate(log_alpha, threshold=0.5))
        self.assertAllClose(cut, np.where(log_alpha >= 0.5, open_, 0.0))
        # Variable, scope and argument, in increasing precedence.
        gate.set_threshold(2.0)
        self.assertEqual(gate.get_threshold(), 2.0)
        self.assertAllClose(np.asarray(gate(log_alpha)), [[0, 0, 0, open_[0, 3]]])
        with threshold_scope(-5.0):
            self.assertAllClose(np.asarray(gate(log_alpha)), open_)
            self.assertAllClose(np.asarray(gate(log_alpha, threshold=0.5)), cut)
        gate.set_threshold(None)
        self.assertIsNone(gate.get_threshold())

    def test_threshold_variable_changes_traced_function_without_retrace(self):
        gate = HardConcreteGate()
        log_alpha = tf.constant([[0.0, 1.0, 2.0]])
        fn = tf.function(lambda la: gate(la, training=False))
        gate(log_alpha)
        before = fn(log_alpha).numpy()
        self.assertEqual(set_threshold(gate, 1.5), 1)
        after = fn(log_alpha).numpy()
        self.assertEqual(fn.experimental_get_tracing_count(), 1)
        self.assertAllClose(after, [[0.0, 0.0, before[0, 2]]])
        self.assertEqual(get_threshold(gate), 1.5)

    def test_threshold_scope_takes_a_tensor_input(self):
        gate = HardConcreteGate()
        spec = [tf.TensorSpec((None, 3)), tf.TensorSpec((), tf.float32)]

        @tf.function(input_signature=spec)
        def serve(log_alpha, threshold):
            with threshold_scope(threshold):
                return gate(log_alpha, training=False)

        log_alpha = tf.constant([[0.0, 1.0, 2.0]])
        gate(log_alpha)  # builds the threshold variable outside the trace
        low = serve(log_alpha, tf.constant(-10.0)).numpy()
        high = serve(log_alpha, tf.constant(0.5)).numpy()
        self.assertEqual(serve.experimental_get_tracing_count(), 1)
        self.assertGreater(low[0, 0], 0)
        self.assertAllClose(high, [[0.0, low[0, 1], low[0, 2]]])

    def test_sparsity_loss(self):
        gate = HardConcreteGate(sparsity_weight=0.5)
        log_alpha = np.zeros((2, 4), "float32")
        gate(log_alpha)
        expected = 0.5 / (1 + math.exp(BETA * math.log(-GAMMA / ZETA)))
        self.assertAllClose(float(ops.convert_to_numpy(gate.losses[0])), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": 0.1}, "gamma"),
        ({"zeta": 1.0}, "zeta"),
        ({"beta": 0}, "beta"),
        ({"sparsity_weight": -0.1}, "sparsity_weight"),
        ({"sparsity_weight": float("nan")}, "sparsity_weight"),
        ({"threshold": float("nan")}, "NaN"),
        ({"threshold": [1.0, 2.0]}, "scalar"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HardConcreteGate(**kwargs)


@pytest.mark.parametrize(
    "threshold, message",
    [
        (float("nan"), "NaN"),
        (np.array([0.0, 1.0]), "scalar"),
        (tf.constant([1.0]), "scalar"),
        (tf.constant(float("nan")), "NaN"),
        ("high", "scalar"),
    ],
)
def test_bad_threshold(threshold, message):
    gate = HardConcreteGate()
    with pytest.raises(ValueError, match=message):
        gate(np.zeros((1, 2), "float32"), threshold=threshold)
    with pytest.raises(ValueError, match=message):
        set_threshold(gate, threshold)
