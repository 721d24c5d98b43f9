"""Preprocessing as data: how a raw image or waveform becomes a model input.

Every registered dataset has one (`dataset_preprocessing`), derived from its
registry entry; the zoo manifest and the export metadata store it as
`input.preprocessing_config` (`as_dict`), and `spzoo infer` and
`spzoo export --raw-input` read it back (`from_dict`).

Images (`ImagePreprocessing`), per channel `c`:

```
x[..., c] = (pixels[..., c] / pixel_scale - mean[c]) / std[c]
```

`pixels` are the dataset's raw values (full scale `pixel_scale`: 255 for
8-bit images, 16 for scikit-learn's digits); an image file gives
`pixels / pixel_scale` by its own bit depth. Greyscale sets have mean 0 and
std 1 ([0, 1] scaling); colour sets the per-channel mean and std of their
training images, in [0, 1] units.

Audio (`AudioPreprocessing`): the fields of `spzoo.data.audio_config.
AudioConfig` (sample rate, clip and piece length, Mel bands, window, hop,
image size), run by `spzoo.data.audio`.
"""

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from spzoo.data.audio_config import AudioConfig

COLOR_MODES = {1: "grayscale", 3: "rgb"}


class PreprocessingError(ValueError):
    """A preprocessing config that is malformed; the message names the field."""


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise PreprocessingError(f"{where}: {message}")


def _positive(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """Raw pixels -> model input (see the module docstring).

    Attributes:
        image_size: `(H, W)` of the model input.
        color_mode: `"grayscale"` (1 channel) or `"rgb"` (3 channels).
        pixel_scale: Full-scale value of a raw pixel (255 for 8-bit).
        mean: Per-channel mean subtracted after scaling, in [0, 1] units.
        std: Per-channel standard deviation divided by, in [0, 1] units.
    """

    image_size: tuple
    color_mode: str = "grayscale"
    pixel_scale: float = 255.0
    mean: tuple = (0.0,)
    std: tuple = (1.0,)

    kind = "image"

    def __post_init__(self):
        check(self.as_dict(), "ImagePreprocessing")

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def input_shape(self) -> tuple:
        return (*self.image_size, self.channels)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "image_size": [int(v) for v in self.image_size],
            "color_mode": self.color_mode,
            "pixel_scale": float(self.pixel_scale),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    def normalize(self, unit: np.ndarray) -> np.ndarray:
        """`(unit - mean) / std` of float32 images already in [0, 1] units."""
        unit = np.asarray(unit, np.float32)
        return (unit - np.float32(self.mean)) / np.float32(self.std)

    def apply(self, pixels) -> np.ndarray:
        """Model inputs (float32) of raw pixels `(..., H, W, C)`."""
        x = np.asarray(pixels).astype(np.float32) / np.float32(self.pixel_scale)
        return self.normalize(x)

    def to_pixels(self, x, dtype=np.uint8) -> np.ndarray:
        """The raw pixels (rounded, clipped to `[0, pixel_scale]`) that give
        model inputs `x`: the inverse of `apply`, for examples of a raw-input
        export."""
        unit = np.asarray(x, np.float64) * self.std + np.asarray(self.mean)
        return self.unit_to_pixels(unit, dtype)

    def unit_to_pixels(self, unit, dtype=np.uint8) -> np.ndarray:
        """Raw pixels (rounded, clipped to `[0, pixel_scale]`) of images in
        [0, 1] units (an image file scaled by its bit depth)."""
        pixels = np.rint(np.asarray(unit, np.float64) * self.pixel_scale)
        return np.clip(pixels, 0, self.pixel_scale).astype(dtype)


@dataclasses.dataclass(frozen=True)
class AudioPreprocessing:
    """Waveform -> log-Mel image: the fields of `AudioConfig`.

    Attributes:
        sample_rate: Rate (Hz) recordings are resampled to.
        clip_seconds: Recordings are clipped or zero-padded to this length.
        piece_seconds: Longer clips are cut into pieces of this length.
        num_mels: Mel bands.
        window: STFT window and FFT length, in samples.
        hop: STFT hop, in samples.
        image_size: Side of the square log-Mel image.
    """

    sample_rate: int
    clip_seconds: float
    piece_seconds: float
    num_mels: int
    window: int
    hop: int
    image_size: int

    kind = "audio"

    def __post_init__(self):
        check(self.as_dict(), "AudioPreprocessing")

    @classmethod
    def from_config(cls, config: AudioConfig) -> "AudioPreprocessing":
        return cls(
            sample_rate=config.rate,
            clip_seconds=float(config.clip_seconds),
            piece_seconds=float(config.piece_seconds),
            num_mels=config.num_mels,
            window=config.window,
            hop=config.hop,
            image_size=config.image_size,
        )

    def config(self) -> AudioConfig:
        """The `AudioConfig` that `spzoo.data.audio` runs."""
        return AudioConfig(
            clip_seconds=self.clip_seconds,
            piece_seconds=self.piece_seconds,
            rate=self.sample_rate,
            window=self.window,
            hop=self.hop,
            mels=self.num_mels,
            size=self.image_size,
        )

    @property
    def input_shape(self) -> tuple:
        return (self.image_size, self.image_size, 1)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "sample_rate": int(self.sample_rate),
            "clip_seconds": float(self.clip_seconds),
            "piece_seconds": float(self.piece_seconds),
            "num_mels": int(self.num_mels),
            "window": int(self.window),
            "hop": int(self.hop),
            "image_size": int(self.image_size),
        }


Preprocessing = ImagePreprocessing | AudioPreprocessing
IMAGE_FIELDS = ("image_size", "color_mode", "pixel_scale", "mean", "std")
AUDIO_FIELDS = (
    "sample_rate",
    "clip_seconds",
    "piece_seconds",
    "num_mels",
    "window",
    "hop",
    "image_size",
)


def check(document, where: str = "preprocessing_config") -> dict:
    """Checks a preprocessing config dict; returns it unchanged.

    Raises:
        PreprocessingError: naming `where`, the field and what was expected.
    """
    _check(isinstance(document, dict), where, "expected an object")
    kind = document.get("kind")
    _check(
        kind in ("image", "audio"),
        where,
        f"'kind' must be 'image' or 'audio'; got {kind!r}",
    )
    fields = IMAGE_FIELDS if kind == "image" else AUDIO_FIELDS
    for field in fields:
        _check(field in document, where, f"missing field {field!r}")
    extra = sorted(set(document) - {"kind", *fields})
    _check(not extra, where, f"unknown field(s) {extra}; expected {fields}")
    if kind == "audio":
        for field in AUDIO_FIELDS:
            _check(
                _positive(document[field]),
                where,
                f"{field!r} must be a positive number; got {document[field]!r}",
            )
        for field in ("sample_rate", "num_mels", "window", "hop", "image_size"):
            _check(
                isinstance(document[field], int),
                where,
                f"{field!r} must be an integer; got {document[field]!r}",
            )
        return document
    size = document["image_size"]
    _check(
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size),
        where,
        f"'image_size' must be [H, W] (positive integers); got {size!r}",
    )
    mode = document["color_mode"]
    _check(
        mode in COLOR_MODES.values(),
        where,
        f"'color_mode' must be one of {tuple(COLOR_MODES.values())}; got {mode!r}",
    )
    _check(
        _positive(document["pixel_scale"]),
        where,
        f"'pixel_scale' must be a positive number; got {document['pixel_scale']!r}",
    )
    channels = 1 if mode == "grayscale" else 3
    for field in ("mean", "std"):
        values = document[field]
        _check(
            isinstance(values, list | tuple)
            and len(values) == channels
            and all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                for v in values
            ),
            where,
            f"{field!r} must be {channels} finite number(s), one per channel of "
            f"{mode!r}; got {values!r}",
        )
    _check(
        all(v > 0 for v in document["std"]),
        where,
        f"'std' must be positive; got {document['std']!r}",
    )
    return document


def from_dict(document, where: str = "preprocessing_config") -> Preprocessing:
    """The `ImagePreprocessing` or `AudioPreprocessing` of a checked dict."""
    check(document, where)
    fields = {k: v for k, v in document.items() if k != "kind"}
    if document["kind"] == "audio":
        return AudioPreprocessing(**fields)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return ImagePreprocessing(**fields)


def describe(document: dict) -> str:
    """One line on a checked preprocessing config, e.g. `image 28x28
    grayscale: (pixels / 255 - mean) / std, mean [0], std [1]`."""
    c = check(document)
    if c["kind"] == "audio":
        return (
            f"audio at {c['sample_rate']} Hz, clip {c['clip_seconds']:g} s (pieces "
            f"of {c['piece_seconds']:g} s), log-Mel {c['num_mels']} bands, window "
            f"{c['window']}, hop {c['hop']} -> {c['image_size']}x{c['image_size']}"
        )
    h, w = c["image_size"]
    numbers = lambda values: "[" + ", ".join(f"{v:.6g}" for v in values) + "]"  # noqa: E731
    return (
        f"image {h}x{w} {c['color_mode']}: (pixels / {c['pixel_scale']:g} - mean) "
        f"/ std, mean {numbers(c['mean'])}, std {numbers(c['std'])}"
    )


def unit_scaling(input_shape, pixel_scale: float = 255.0) -> ImagePreprocessing:
    """[0, 1] scaling of `(H, W, C)` images: mean 0, std 1 per channel."""
    h, w, c = (int(v) for v in input_shape)
    if c not in COLOR_MODES:
        raise PreprocessingError(
            f"`input_shape` {tuple(input_shape)}: images have 1 (grayscale) or 3 "
            f"(rgb) channels; got {c}."
        )
    return ImagePreprocessing(
        (h, w), COLOR_MODES[c], pixel_scale, (0.0,) * c, (1.0,) * c
    )


def channel_normalization(
    input_shape, mean, std, pixel_scale: float = 255.0
) -> ImagePreprocessing:
    """Per-channel normalisation by `mean` and `std` given in raw pixel units
    (the statistics of the training images, as `visual.channel_stats`)."""
    base = unit_scaling(input_shape, pixel_scale)
    scale = float(pixel_scale)
    return dataclasses.replace(
        base,
        mean=tuple(float(m) / scale for m in np.ravel(mean)),
        std=tuple(float(s) / scale for s in np.ravel(std)),
    )


def dataset_preprocessing(dataset, **options) -> Preprocessing:
    """The preprocessing of a registered dataset, from its registry entry.

    Args:
        dataset: A dataset name or its `DatasetInfo`.
        **options: Passed to a preprocessing that depends on the user's copy
            of the data (colour sets: the training images' statistics), e.g.
            `data_dir=`.

    Its `DatasetInfo.preprocessing` is an `ImagePreprocessing` or
    `AudioPreprocessing`, a callable returning one (computed from the
    data), or None: [0, 1] scaling of 8-bit images.
    """
    from spzoo.data.registry import get

    info = get(dataset) if isinstance(dataset, str) else dataset
    spec = info.preprocessing
    if isinstance(spec, Callable):
        spec = spec(**options)
    if spec is None:
        if info.modality != "image":
            raise PreprocessingError(
                f"Dataset {info.name!r} ({info.modality}) registers no "
                "`preprocessing`; expected an AudioPreprocessing."
            )
        spec = unit_scaling(info.input_shape)
    if tuple(spec.input_shape) != tuple(info.input_shape):
        raise PreprocessingError(
            f"Dataset {info.name!r}: its preprocessing gives inputs of shape "
            f"{tuple(spec.input_shape)}; its `input_shape` is {info.input_shape}."
        )
    return spec


def is_static(dataset) -> bool:
    """Whether the dataset's preprocessing is known without reading its data."""
    from spzoo.data.registry import get

    info = get(dataset) if isinstance(dataset, str) else dataset
    return not isinstance(info.preprocessing, Callable)
