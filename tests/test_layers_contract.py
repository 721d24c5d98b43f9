"""Keras's layer contract for the custom layers not tested elsewhere.

As Keras's own `prelu_test.py`: per layer, `run_layer_test` (config and
serialization round trips, build, symbolic and eager calls, a training step,
mixed precision), a NumPy reference of what the layer computes, and the
exact text of its error. The neuron layers, `HardConcreteGate` and
`InhibitionConv2D` have theirs in their own test modules.
"""

import re

import keras
import numpy as np
from keras.src import testing

from spzoo.data import AudioPreprocessing
from spzoo.data.audio import log_mel_image
from spzoo.export.raw_input import LogMelSpectrogram, RawImagePreprocessing
from spzoo.layers import ChannelGate, PresynapticGate, WholeMapDepthwisePooling
from spzoo.nhn import ChannelMask, MaskedConv2D
from spzoo.nhn.choice import Choice

GAMMA, ZETA, BETA = -0.1, 1.1, 2.0 / 3.0


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_conv2d_valid(x, kernel, bias):
    """`y[b, h, w, o] = sum_{i, j, c} x[b, h + i, w + j, c] k[i, j, c, o] + b`."""
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel) + bias


class PresynapticGateTest(testing.TestCase):
    def test_presynaptic_gate(self):
        self.run_layer_test(
            PresynapticGate,
            init_kwargs={"filters": 3, "sparsity_weight": 0.1, "seed": 1},
            input_shape=(2, 5, 5, 4),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=1,
            expected_num_losses=1,
            supports_masking=False,
        )

    def test_presynaptic_gate_correctness(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 5, 5, 4)).astype("float32")
        kernel = rng.normal(size=(4, 3)).astype("float32")
        bias = np.array([-2.0, 0.5, 1.0], "float32")
        layer = PresynapticGate(3, sparsity_weight=0.1, log_alpha_scale=2.0)
        layer.build(x.shape)
        layer.presynaptic_kernel.assign(kernel)
        layer.presynaptic_bias.assign(bias)

        log_alpha = 2.0 * (x.mean(axis=(1, 2)) @ kernel + bias)
        gate = np.clip(np_sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)
        self.assertAllClose(layer(x), gate, atol=1e-5)
        self.assertAllClose(
            layer(x, threshold=0.5), np.where(log_alpha >= 0.5, gate, 0), atol=1e-5
        )
        open_probability = np_sigmoid(log_alpha - BETA * np.log(-GAMMA / ZETA))
        self.assertAllClose(layer.losses[-1], 0.1 * open_probability.mean(), atol=1e-6)

    def test_presynaptic_gate_errors(self):
        with self.assertRaisesRegex(
            ValueError, re.escape("`filters` must be an int >= 1; received 0.")
        ):
            PresynapticGate(0)
        with self.assertRaisesRegex(
            ValueError,
            re.escape(
                "`PresynapticGate` expects inputs of shape (batch, height, width, "
                "channels) with known channels; received (2, 5, 4)."
            ),
        ):
            PresynapticGate(3).build((2, 5, 4))


class ChannelGateTest(testing.TestCase):
    def test_channel_gate(self):
        self.run_layer_test(
            ChannelGate,
            init_kwargs={},
            input_shape=((2, 4, 4, 3), (2, 3)),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_channel_gate_correctness(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
        z = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.25]], "float32")
        y = np.asarray(ChannelGate()([x, z]))
        self.assertAllClose(y, x * z[:, None, None, :])
        self.assertTrue(np.all(y[0, ..., 0] == 0) and np.all(y[1, ..., 1] == 0))

    def test_channel_gate_errors(self):
        with self.assertRaisesRegex(
            ValueError,
            re.escape(
                "`ChannelGate` expects `[x, z]` of shapes (batch, height, width, "
                "C) and (batch, C); received (2, 4, 4, 3) and (2, 4)."
            ),
        ):
            ChannelGate().build([(2, 4, 4, 3), (2, 4)])


class WholeMapDepthwisePoolingTest(testing.TestCase):
    def test_whole_map_depthwise_pooling(self):
        self.run_layer_test(
            WholeMapDepthwisePooling,
            init_kwargs={},
            input_shape=(2, 3, 4, 5),
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_whole_map_depthwise_pooling_correctness(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(2, 3, 4, 5)).astype("float32")
        layer = WholeMapDepthwisePooling()
        self.assertAllClose(layer(x), x.mean(axis=(1, 2)), atol=1e-6)
        kernel = rng.normal(size=(3, 4, 5)).astype("float32")
        layer.kernel.assign(kernel)
        expected = np.einsum("bhwc,hwc->bc", x, kernel)
        self.assertAllClose(layer(x), expected, atol=1e-5)

    def test_whole_map_depthwise_pooling_errors(self):
        with self.assertRaisesRegex(
            ValueError,
            re.escape(
                "WholeMapDepthwisePooling needs a known (H, W, C) input; "
                "received (2, None, None, 3)."
            ),
        ):
            WholeMapDepthwisePooling().build((2, None, None, 3))


MASK = [[1, 0, 1, 1], [0, 1, 1, 0]]


class MaskedConv2DTest(testing.TestCase):
    def test_masked_conv2d(self):
        self.run_layer_test(
            MaskedConv2D,
            init_kwargs={
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "mask": MASK,
            },
            input_shape=(2, 5, 5, 2),
            expected_output_shape=(2, 5, 5, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=1,
            supports_masking=False,
        )

    def test_masked_conv2d_correctness(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(2, 5, 5, 2)).astype("float32")
        layer = MaskedConv2D(4, 3, mask=MASK)
        layer.build(x.shape)
        kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
        kernel[0, 0, 1, 0] = np.inf  # a switched-off weight never leaks
        bias = rng.normal(size=(4,)).astype("float32")
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        masked = np.where(np.array(MASK, bool)[None, None], kernel, 0.0)
        self.assertAllClose(layer(x), np_conv2d_valid(x, masked, bias), atol=1e-5)
        self.assertEqual(layer.effective_params(), 9 * 5 + 4)

    def test_masked_conv2d_errors(self):
        layer = MaskedConv2D(4, 3, mask=np.ones((3, 4)), name="addon")
        with self.assertRaisesRegex(
            ValueError,
            re.escape(
                "`mask` of addon must have shape (2, 4) (C_in, C_out); received (3, 4)."
            ),
        ):
            layer.build((2, 5, 5, 2))


class ChannelMaskTest(testing.TestCase):
    def test_channel_mask(self):
        self.run_layer_test(
            ChannelMask,
            init_kwargs={"mask": [1.0, 0.0, 1.0]},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_channel_mask_correctness(self):
        x = np.random.default_rng(4).normal(size=(2, 4, 4, 3)).astype("float32")
        y = np.asarray(ChannelMask([1, 0, 1])(x))
        self.assertAllClose(y, x * np.array([1.0, 0.0, 1.0], "float32"))

    def test_channel_mask_errors(self):
        # `ChannelMask` checks nothing itself: a mask that is not numbers
        # fails in `float`.
        with self.assertRaisesRegex(
            ValueError, re.escape("could not convert string to float: 'on'")
        ):
            ChannelMask(["on", "off"])


class ChoiceTest(testing.TestCase):
    def test_choice(self):
        self.run_layer_test(
            Choice,
            init_kwargs={"size": 3},
            input_shape=((2, 4, 4, 3), (2, 4, 4, 3), (2, 4, 4, 3)),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            supports_masking=False,
            run_mixed_precision_check=False,  # see the next test
        )

    def test_choice_under_mixed_precision(self):
        # What `run_layer_test`'s mixed precision check does: the symbolic
        # call (the eager one autocasts the variable and passes).
        layer = Choice(2, dtype="mixed_float16")
        layer.build([(2, 3), (2, 3)])
        branches = [keras.KerasTensor((2, 3), dtype="float16")] * 2
        self.assertEqual(layer.compute_output_spec(branches).dtype, "float16")

    def test_choice_correctness(self):
        rng = np.random.default_rng(6)
        branches = [rng.normal(size=(2, 4, 4, 3)).astype("float32") for _ in range(3)]
        layer = Choice(3)
        self.assertAllClose(layer(branches), np.zeros_like(branches[0]))
        layer.choice.assign([0.0, 1.0, 0.0])  # a supernet picks one branch
        self.assertAllClose(layer(branches), branches[1])
        layer.choice.assign([0.5, 0.0, 2.0])
        expected = 0.5 * branches[0] + 2.0 * branches[2]
        self.assertAllClose(layer(branches), expected, atol=1e-6)

    def test_choice_errors(self):
        # `Choice` checks nothing itself: a size that is not a number fails
        # in `int`.
        with self.assertRaisesRegex(
            ValueError, re.escape("invalid literal for int() with base 10: 'three'")
        ):
            Choice("three")


CUSTOM = {
    "RawImagePreprocessing": RawImagePreprocessing,
    "LogMelSpectrogram": LogMelSpectrogram,
}


class RawImagePreprocessingTest(testing.TestCase):
    def test_raw_image_preprocessing(self):
        self.run_layer_test(
            RawImagePreprocessing,
            init_kwargs={"pixel_scale": 255.0, "mean": [0.5, 0.4], "std": [0.2, 0.3]},
            input_shape=(2, 4, 4, 2),
            input_dtype="uint8",
            expected_output_shape=(2, 4, 4, 2),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            custom_objects=CUSTOM,
            run_training_check=False,  # no float input, nothing to train
            # Export-only, float32 by design: under `mixed_float16` it still
            # returns float32 while its output spec says float16.
            run_mixed_precision_check=False,
        )

    def test_raw_image_preprocessing_correctness(self):
        pixels = np.random.default_rng(5).integers(0, 256, (2, 4, 4, 2), "uint8")
        layer = RawImagePreprocessing(255.0, [0.5, 0.4], [0.2, 0.3])
        expected = (pixels / 255.0 - np.array([0.5, 0.4])) / np.array([0.2, 0.3])
        self.assertAllClose(layer(pixels), expected, atol=1e-5)

    def test_raw_image_preprocessing_errors(self):
        with self.assertRaisesRegex(
            ValueError, re.escape("could not convert string to float: 'white'")
        ):
            RawImagePreprocessing("white", [0.5], [0.2])


AUDIO = {
    "kind": "audio",
    "sample_rate": 8000,
    "clip_seconds": 0.5,
    "piece_seconds": 0.5,
    "num_mels": 16,
    "window": 256,
    "hop": 128,
    "image_size": 16,
}


class LogMelSpectrogramTest(testing.TestCase):
    def test_log_mel_spectrogram(self):
        self.run_layer_test(
            LogMelSpectrogram,
            init_kwargs={"config": AUDIO},
            input_shape=(2, 4000),
            expected_output_shape=(2, 16, 16, 1),
            expected_num_trainable_weights=0,
            custom_objects=CUSTOM,
            run_training_check=False,  # no weights to train
            # Export-only, float32 by design: the STFT refuses float16.
            run_mixed_precision_check=False,
        )

    def test_log_mel_spectrogram_is_the_training_pipeline(self):
        # The layer's contract is the training pipeline's own function.
        t = np.arange(4000) / 8000
        waves = 0.5 * np.stack([np.sin(2 * np.pi * 440 * t), np.sign(np.sin(9 * t))])
        waves = waves.astype("float32")
        pipeline = AudioPreprocessing(
            **{k: v for k, v in AUDIO.items() if k != "kind"}
        ).config()
        layer = LogMelSpectrogram(AUDIO)
        self.assertAllClose(layer(waves), log_mel_image(waves, pipeline), atol=1e-6)

    def test_log_mel_spectrogram_errors(self):
        with self.assertRaisesRegex(
            ValueError,
            re.escape("AudioPreprocessing: 'hop' must be a positive number; got 0"),
        ):
            LogMelSpectrogram({**AUDIO, "hop": 0})
