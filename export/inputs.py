"""Reading inference inputs from files: images, `.npy` arrays and audio clips.

The model's preprocessing comes from its metadata's
`input.preprocessing_config` (`spzoo.data.preprocessing`; [0, 1] scaling
for an artifact written before it existed):

- images (`.png`, `.jpg`, `.jpeg`, `.bmp`, `.gif`): decoded with Pillow
  (a truncated or unreadable file is an error naming it), resized to the
  model's `H x W` (nearest neighbour, as `keras.utils.load_img`), greyscale
  for one channel and RGB for three, scaled to `[0, 1]` by the file's bit
  depth (8-bit by 255, 16-bit by 65535), then normalised per channel by the
  config's mean and std;
- `.npy`: one example `(H, W, C)` or a batch `(N, H, W, C)`, N >= 1; float
  arrays are used as they are (every value must be finite), `uint8` arrays
  are raw pixels (scaled by the config's `pixel_scale`, then normalised),
  `uint16` arrays 16-bit pixels (scaled by 65535, then normalised); other
  integer or boolean arrays are refused (their scale is unknown);
- audio (`.wav`, `.flac`, `.ogg`, `.aiff`): the zoo's log-Mel pipeline
  (`spzoo.data.audio.preprocess_file`) with the config's sample rate, clip
  length, Mel bands, window and hop, one example per piece of the clip.

A raw-input artifact (`spzoo export --raw-input`) preprocesses in its graph:
images go to it as uint8 pixels, audio as the resampled, clipped waveform.

`expand_inputs` turns the command line's files, folders and globs into the
list of files to read.
"""

import glob
from pathlib import Path

import numpy as np

from spzoo.data.audio_config import AudioConfig
from spzoo.data.preprocessing import AudioPreprocessing, from_dict, unit_scaling

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
PIXEL_SCALES = {np.dtype("uint8"): 255.0, np.dtype("uint16"): 65535.0}
MAX_CLIP_SECONDS = 600.0


def _readable(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix == ".npy" or suffix in IMAGE_SUFFIXES + AUDIO_SUFFIXES


def expand_inputs(items) -> list[Path]:
    """The files that `items` name, in order, each once.

    Args:
        items: Paths of files (kept as given, whatever their suffix, so
            that `read_input` names an unknown type), folders (every image,
            `.npy` and audio file below them, sorted) and glob patterns
            (`*`, `?`, `[...]`, `**`; matches sorted).

    Raises:
        ValueError: A path that does not exist, a pattern that matches no
            file, or a folder without a readable file.
    """
    files = []
    for item in map(str, items):
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _readable(p))
            if not found:
                raise ValueError(
                    f"Input folder {item!r} holds no image, .npy or audio file."
                )
            files.extend(found)
        elif path.exists() or not glob.has_magic(item):
            files.append(path)  # a missing file is named by `read_input`
        else:
            found = sorted(
                Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file()
            )
            if not found:
                raise ValueError(f"Input pattern {item!r} matches no file.")
            files.extend(found)
    return list(dict.fromkeys(files))


def check_finite(x: np.ndarray, where: str) -> None:
    """`ValueError` naming `where` when `x` holds NaN or infinite values."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{where} holds {int(bad.sum())} NaN or infinite value(s) (the first "
            f"at index {first}); expected finite numbers."
        )


def _read_npy(
    path: Path, input_shape: tuple, expected: str, config, raw: bool
) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"Cannot read {str(path)!r} as .npy: {error}") from error
    if x.dtype in PIXEL_SCALES and config.kind == "audio":
        raise ValueError(
            f"Input {str(path)!r} has dtype {x.dtype}; an audio model takes float "
            "log-Mel images (or waveforms, raw-input artifacts)."
        )
    if x.dtype in PIXEL_SCALES:
        scale = config.pixel_scale if x.dtype == np.uint8 else PIXEL_SCALES[x.dtype]
        unit = x.astype(np.float32) / np.float32(scale)
        if raw and x.dtype != np.uint8:
            x = config.unit_to_pixels(unit)
        elif not raw:
            x = config.normalize(unit)
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"Input {str(path)!r} has dtype {x.dtype}; expected float values as "
            "the model takes them (preprocessed), or uint8 / uint16 pixels "
            f"(scaled to [0, 1]), in {expected}."
        )
    if x.shape == input_shape:
        x = x[None]
    if x.ndim != len(input_shape) + 1 or x.shape[1:] != input_shape:
        raise ValueError(
            f"Input {str(path)!r} has shape {x.shape}; expected {expected}."
        )
    if x.dtype == np.uint8:
        return x  # a raw-input artifact's pixels
    check_finite(x, f"Input {str(path)!r}")
    if np.abs(x).max(initial=0.0) > np.finfo(np.float32).max:
        raise ValueError(f"Input {str(path)!r} has values beyond float32's range.")
    return x.astype(np.float32)


def _read_image(path: Path, input_shape: tuple) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels = input_shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(
            f"Image {str(path)!r}: the model takes {channels} channels; "
            "image files give 1 (greyscale), 3 (RGB) or 4 (RGBA)."
        )
    size = (input_shape[1], input_shape[0])  # PIL: (width, height)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here
            if image.mode.startswith("I;16") or image.mode == "I":
                pixels = np.asarray(image, dtype=np.float64)
                if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 65535:
                    raise ValueError(
                        f"{image.mode} pixels outside [0, 65535] "
                        f"([{pixels.min():g}, {pixels.max():g}])"
                    )
                grey = Image.fromarray((pixels / 65535.0).astype(np.float32), "F")
                x = np.asarray(grey.resize(size, Image.NEAREST), np.float32)[..., None]
                if channels > 1:
                    x = np.repeat(x, 3, axis=-1)
                    if channels == 4:
                        x = np.concatenate([x, np.ones_like(x[..., :1])], axis=-1)
            elif image.mode == "F":
                raise ValueError(
                    "a floating-point image has no fixed scale; save the "
                    "preprocessed values as .npy"
                )
            else:
                mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
                converted = image.convert(mode).resize(size, Image.NEAREST)
                x = np.asarray(converted, np.float32).reshape(
                    input_shape[0], input_shape[1], channels
                )
                x = x / 255.0
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read image {str(path)!r}: {error}") from None
    return x[None]


def _read_audio(path: Path, config, raw: bool) -> np.ndarray:
    """Log-Mel images `(P, S, S, 1)` of an audio file, or for a raw-input
    artifact its waveform resampled and cut into pieces `(P, samples)`."""
    from spzoo.data import audio  # TensorFlow I/O: not for `spzoo infer --help`

    pipeline = config.config()
    if not raw:
        return np.asarray(audio.preprocess_file(str(path), pipeline))
    info = audio.probe(str(path))
    x = audio._read_with_soundfile(str(path), audio.source_frames(pipeline, info.rate))
    return np.asarray(
        audio.to_pieces(audio.resample(x, info.rate, pipeline.rate), pipeline)
    )


def _config(preprocessing, input_shape: tuple):
    if preprocessing is None:  # an artifact written before the config
        return unit_scaling(input_shape) if len(input_shape) == 3 else None
    return from_dict(preprocessing, "the model's `input.preprocessing_config`")


def read_input(
    path,
    input_shape,
    clip_seconds: float | None = None,
    preprocessing: dict | None = None,
    raw: bool = False,
) -> np.ndarray:
    """Returns the batch `(N, *input_shape)`, N >= 1, that file `path` holds:
    float32 model inputs, or raw uint8 pixels / waveforms for a raw-input
    artifact (`raw=True`).

    Args:
        path: An image, `.npy` or audio file.
        input_shape: The shape of one example the artifact takes.
        clip_seconds: Audio: overrides the config's clip length.
        preprocessing: The model's `input.preprocessing_config` (None:
            [0, 1] scaling of images, the default log-Mel settings).
        raw: The artifact preprocesses in its graph.

    Raises:
        ValueError: Unknown file type, unreadable or truncated file, an
            array whose shape is not `(H, W, C)` / `(N, H, W, C)`, an
            empty batch, an array of unknown scale (signed integers,
            booleans) or with NaN / infinite values.
    """
    path = Path(path)
    input_shape = tuple(int(d) for d in input_shape)
    expected = (
        f"an example of shape {input_shape} or a batch (N, "
        f"{', '.join(map(str, input_shape))})"
    )
    if not path.is_file():
        raise ValueError(f"Input {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    config = _config(preprocessing, input_shape)
    audio_config = config is None or config.kind == "audio"
    if suffix in AUDIO_SUFFIXES or audio_config:
        if config is None or config.kind != "audio":  # the default settings
            config = AudioPreprocessing.from_config(AudioConfig(1.0))
        if clip_seconds is not None:
            if not 0 < clip_seconds <= MAX_CLIP_SECONDS:
                raise ValueError(
                    f"`--clip-seconds` must be in (0, {MAX_CLIP_SECONDS:g}]; "
                    f"received {clip_seconds!r}."
                )
            fields = dict(config.as_dict(), clip_seconds=float(clip_seconds))
            fields.pop("kind")
            config = AudioPreprocessing(**fields)
    if suffix == ".npy":
        x = _read_npy(path, input_shape, expected, config, raw)
    elif suffix in IMAGE_SUFFIXES:
        if config.kind == "audio":
            raise ValueError(f"Input {str(path)!r} is an image; the model takes audio.")
        x = _read_image(path, input_shape)
        x = config.unit_to_pixels(x) if raw else config.normalize(x)
    elif suffix in AUDIO_SUFFIXES:
        x = _read_audio(path, config, raw)
        if x.shape[1:] != input_shape:
            raise ValueError(
                f"Audio {str(path)!r} gives examples of shape {x.shape[1:]}"
                f" at clip_seconds={config.clip_seconds:g}; the model expects "
                f"{input_shape}."
            )
        check_finite(x, f"Audio {str(path)!r}")
        x = x.astype(np.float32)
    else:
        raise ValueError(
            f"Input {str(path)!r}: expected an image "
            f"({', '.join(IMAGE_SUFFIXES)}), a .npy array or audio "
            f"({', '.join(AUDIO_SUFFIXES)})."
        )
    if len(x) == 0:
        raise ValueError(f"Input {str(path)!r} holds no examples (an empty batch).")
    return x
