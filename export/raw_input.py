"""Raw-input exports: the preprocessing inside the exported graph.

`raw_input_model(model, config)` puts a preprocessing layer in front of a
Keras model, so that every export format (`spzoo export --raw-input`) takes

- images: raw uint8 pixels `(batch, H, W, C)` (NHWC), scaled and
  normalised per channel in the graph (`RawImagePreprocessing`, the formula
  of `spzoo.data.preprocessing.ImagePreprocessing`);
- audio: a float32 waveform at the config's sample rate, `(batch, samples)`
  of one clip, turned into the log-Mel image in the graph by the training
  pipeline's own function (`spzoo.data.audio.log_mel_image`: STFT, Mel
  scale, log, bilinear resize, all TensorFlow ops).

`raw_examples(config, x)` gives the raw inputs of a parity check with their
preprocessed images (the path the model was trained on): images invert
the dataset's examples to their pixels; audio uses deterministic synthetic
waveforms (tones, chirps and noise), as the datasets hold images only.
"""

import keras
import numpy as np

from spzoo.artifact import WAVEFORM_NAME
from spzoo.data.audio import log_mel_image
from spzoo.data.preprocessing import (
    AudioPreprocessing,
    ImagePreprocessing,
    Preprocessing,
)


class RawImagePreprocessing(keras.layers.Layer):
    """uint8 pixels -> `(pixels / pixel_scale - mean) / std`, float32."""

    def __init__(self, pixel_scale: float, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.pixel_scale = float(pixel_scale)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, pixels):
        x = keras.ops.cast(pixels, "float32") / np.float32(self.pixel_scale)
        return (x - np.float32(self.mean)) / np.float32(self.std)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "pixel_scale": self.pixel_scale,
            "mean": self.mean,
            "std": self.std,
        }


class LogMelSpectrogram(keras.layers.Layer):
    """Waveforms `(batch, samples)` -> log-Mel images `(batch, S, S, 1)`,
    by `spzoo.data.audio.log_mel_image` (TensorFlow ops)."""

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        self._pipeline = AudioPreprocessing(
            **{k: v for k, v in self.config.items() if k != "kind"}
        ).config()

    def call(self, waveforms):
        return log_mel_image(waveforms, self._pipeline)

    def compute_output_shape(self, input_shape):
        size = self._pipeline.image_size
        return (input_shape[0], size, size, 1)

    def get_config(self):
        return {**super().get_config(), "config": self.config}


def raw_input_spec(config: Preprocessing) -> tuple[tuple, str, str]:
    """`(example shape, dtype, input name)` of a raw-input export."""
    if isinstance(config, ImagePreprocessing):
        return tuple(config.input_shape), "uint8", "image"
    pipeline = config.config()
    if pipeline.num_pieces != 1:
        raise ValueError(
            f"`raw_input` for audio takes one clip of at most one piece; the "
            f"config clips to {config.clip_seconds:g} s in pieces of "
            f"{config.piece_seconds:g} s ({pipeline.num_pieces} examples per clip)."
        )
    return (pipeline.piece_length,), "float32", WAVEFORM_NAME


def raw_input_model(model: keras.Model, config: Preprocessing) -> keras.Model:
    """`model` behind the preprocessing layer of `config` (see the module
    docstring); the result takes raw pixels or a waveform."""
    if tuple(config.input_shape) != tuple(model.inputs[0].shape[1:]):
        raise ValueError(
            f"`preprocessing_config` gives inputs of shape {config.input_shape}; "
            f"{model.name!r} takes {tuple(model.inputs[0].shape[1:])}."
        )
    shape, dtype, name = raw_input_spec(config)
    raw = keras.Input(shape, dtype=dtype, name=name)
    if isinstance(config, ImagePreprocessing):
        layer = RawImagePreprocessing(
            config.pixel_scale, config.mean, config.std, name="raw_image"
        )
    else:
        layer = LogMelSpectrogram(config.as_dict(), name="log_mel")
    return keras.Model(raw, model(layer(raw)), name=model.name)


def synthetic_waveforms(count: int, samples: int, rate: int, seed: int = 0):
    """`count` deterministic waveforms in [-1, 1]: a tone, a chirp and
    white noise at random frequencies and levels, with a random onset."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    waves = []
    for _ in range(count):
        f0, f1 = rng.uniform(80, rate / 2.5, 2)
        tone = np.sin(2 * np.pi * rng.uniform(100, rate / 3) * t)
        chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
        wave = rng.uniform(0, 0.5) * tone + rng.uniform(0, 0.5) * chirp
        wave += rng.uniform(0.001, 0.1) * rng.standard_normal(samples)
        wave[: rng.integers(0, samples // 4)] = 0.0
        waves.append(np.clip(wave, -1, 1))
    return np.asarray(waves, np.float32)


def raw_examples(config: Preprocessing, x=None, count: int = 256):
    """`(raw, preprocessed)` parity examples (see the module docstring).

    Args:
        config: The preprocessing.
        x: Images: preprocessed examples of the dataset (their pixels are
            recovered by `ImagePreprocessing.to_pixels`).
        count: Audio: the number of waveforms.
    """
    if isinstance(config, ImagePreprocessing):
        raw = config.to_pixels(x)
        return raw, config.apply(raw)
    samples = raw_input_spec(config)[0][0]
    raw = synthetic_waveforms(count, samples, config.sample_rate)
    images = np.concatenate(
        [
            np.asarray(log_mel_image(raw[i : i + 64], config.config()))
            for i in range(0, len(raw), 64)
        ]
    )
    return raw, images
