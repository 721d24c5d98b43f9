"""Tests of InhibitionConv2D: paths, combination, MACs, threshold, errors."""

import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from spzoo.layers import InhibitionConv2D, set_threshold

GAMMA, ZETA = -0.1, 1.1


def _gate(log_alpha):
    return np.clip(1 / (1 + np.exp(-log_alpha)) * (ZETA - GAMMA) + GAMMA, 0, 1)


def _cell(**kwargs):
    """A built 4-channel cell on 6x6x3 inputs with known pre-synaptic
    log-alphas `[-5, -1, 1, 3]` (zero projection kernel)."""
    options = {"padding": "same", "activation": "relu", "seed": 1, **kwargs}
    layer = InhibitionConv2D(4, 3, **options)
    layer.build((None, 6, 6, 3))
    if layer.presynaptic and layer.input_dependent:
        layer.presynaptic_bias.assign([-5.0, -1.0, 1.0, 3.0])
    elif layer.presynaptic:
        layer.log_alpha.assign([-5.0, -1.0, 1.0, 3.0])
    return layer


X = np.random.default_rng(0).uniform(size=(2, 6, 6, 3)).astype("float32")


class InhibitionConv2DTest(testing.TestCase):
    def test_layer_basics_presynaptic(self):
        self.run_layer_test(
            InhibitionConv2D,
            init_kwargs={
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "sparsity_weight": 0.01,
                "seed": 1,
            },
            input_shape=(2, 6, 6, 3),
            expected_output_shape=(2, 6, 6, 4),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=1,
            expected_num_losses=1,
            supports_masking=False,
        )

    def test_layer_basics_both_paths_input_independent(self):
        self.run_layer_test(
            InhibitionConv2D,
            init_kwargs={
                "filters": 4,
                "kernel_size": 3,
                "strides": 2,
                "postsynaptic": True,
                "input_dependent": False,
                "combination": "excitation",
                "sparsity_weight": 0.01,
                "seed": 1,
            },
            input_shape=(2, 6, 6, 3),
            expected_output_shape=(2, 2, 2, 4),
            expected_num_trainable_weights=5,
            expected_num_non_trainable_weights=2,
            expected_num_seed_generators=2,
            expected_num_losses=2,
            supports_masking=False,
        )

    def test_presynaptic_gate_multiplies_the_activated_conv(self):
        layer = _cell()
        conv = np.maximum(np.asarray(layer.conv(X)), 0)
        gate = _gate(np.array([-5.0, -1.0, 1.0, 3.0]))
        self.assertAllClose(layer(X), conv * gate, atol=1e-5)
        self.assertAllClose(
            layer(X, threshold=2.0), conv * gate * [0, 0, 0, 1], atol=1e-5
        )

    def test_combinations(self):
        for combination, expected in (
            ("inhibition", lambda pre, post: pre * post),
            ("excitation", lambda pre, post: pre * (1 + post)),
        ):
            layer = _cell(postsynaptic=True, combination=combination)
            layer.postsynaptic_bias.assign([0.0, 2.0, -4.0, 1.0])
            conv = np.maximum(np.asarray(layer.conv(X)), 0)
            pre = _gate(np.array([-5.0, -1.0, 1.0, 3.0]))
            post = _gate(np.array([0.0, 2.0, -4.0, 1.0]))
            self.assertAllClose(layer(X), conv * expected(pre, post), atol=1e-5)
        post_only = _cell(presynaptic=False, postsynaptic=True)
        post_only.postsynaptic_bias.assign([0.0, 2.0, -4.0, 1.0])
        conv = np.maximum(np.asarray(post_only.conv(X)), 0)
        self.assertAllClose(post_only(X), conv * post, atol=1e-5)

    def test_training_samples_noisy_gates_and_adds_sparsity_loss(self):
        layer = _cell(sparsity_weight=0.1)
        first = np.asarray(layer(X, training=True))
        second = np.asarray(layer(X, training=True))
        self.assertFalse(np.allclose(first, second))
        self.assertLen(layer.losses, 1)
        self.assertAllClose(layer(X), layer(X))

    def test_needed_macs_count_open_channels(self):
        layer = _cell()
        per_channel = 6 * 6 * 3 * 3 * 3
        self.assertEqual(layer.channel_macs(), per_channel)
        self.assertEqual(layer.macs(), 4 * per_channel + 3 * 4)
        # The estimator is exactly 0 below log(-gamma/zeta) ~ -2.4: 3 open.
        self.assertAllClose(layer.needed_macs(X), [3 * per_channel + 12] * 2)
        self.assertAllClose(
            layer.needed_macs(X, threshold=0.0), [2 * per_channel + 12] * 2
        )
        self.assertAllClose(
            layer.needed_macs(X, threshold=0.0, input_fraction=np.array([1.0, 0.5])),
            [2 * per_channel + 12, (2 * per_channel + 12) / 2],
        )
        computed, active = layer.channel_activity(X, threshold=2.0)
        self.assertAllClose(computed, [[0, 0, 0, 1]] * 2)
        self.assertAllClose(active, [[0, 0, 0, 1]] * 2)

    def test_input_dependent_gates_differ_per_example(self):
        layer = _cell()
        layer.presynaptic_kernel.assign(np.full((3, 4), 8.0, "float32"))
        x = np.stack([np.zeros((6, 6, 3)), np.ones((6, 6, 3))]).astype("float32")
        computed, _ = layer.channel_activity(x)
        self.assertAllClose(computed, [[0, 1, 1, 1], [1, 1, 1, 1]])

    def test_threshold_is_a_run_time_value(self):
        layer = _cell()
        fn = tf.function(lambda x: layer(x, training=False))
        full = fn(X).numpy()
        self.assertEqual(set_threshold(layer, 2.0), 1)
        cut = fn(X).numpy()
        self.assertEqual(fn.experimental_get_tracing_count(), 1)
        self.assertAllClose(cut[..., :3], np.zeros_like(cut[..., :3]))
        self.assertAllClose(cut[..., 3], full[..., 3])
        self.assertEqual(layer.get_config()["threshold"], 2.0)

    def test_static_gate_of_input_independent_cell(self):
        layer = _cell(input_dependent=False)
        self.assertAllClose(
            layer.static_gate(), _gate(np.array([-5.0, -1, 1, 3])), atol=1e-6
        )
        self.assertAllClose(layer.static_gate(threshold=0.0)[:2], [0, 0])
        self.assertEqual(layer.path_macs(), (0, 0))
        with self.assertRaisesRegex(ValueError, "input-dependent"):
            _cell().static_gate()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"presynaptic": False, "postsynaptic": False}, "both False"),
        ({"sparsity_weight": -1.0}, "sparsity_weight"),
        ({"combination": "sum"}, "combination"),
        (
            {"presynaptic": False, "postsynaptic": True, "input_dependent": False},
            "input_dependent",
        ),
        ({"threshold": float("nan")}, "NaN"),
        ({"initial_log_alpha": float("inf")}, "initial_log_alpha"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InhibitionConv2D(4, 3, **kwargs)


@pytest.mark.parametrize(
    "threshold, message",
    [(float("nan"), "NaN"), ([0.0, 1.0], "scalar"), (tf.ones((2,)), "scalar")],
)
def test_bad_threshold_in_call(threshold, message):
    layer = _cell()
    with pytest.raises(ValueError, match=message):
        layer(X, threshold=threshold)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        InhibitionConv2D(4, 3)(np.zeros((2, 6, 3), "float32"))
