"""Reading inference inputs from files: images, `.npy` arrays and audio clips.

- images (`.png`, `.jpg`, `.jpeg`, `.bmp`, `.gif`): decoded with Pillow
  (a truncated or unreadable file is an error naming it), resized to the
  model's `H x W` (nearest neighbour, as `keras.utils.load_img`), greyscale
  for one channel and RGB for three, scaled to `[0, 1]` by the file's bit
  depth (8-bit by 255, 16-bit by 65535; the offline image sets'
  preprocessing);
- `.npy`: one example `(H, W, C)` or a batch `(N, H, W, C)`, N >= 1; float
  arrays are used as they are (every value must be finite), `uint8` and
  `uint16` arrays are pixels, scaled to `[0, 1]` like images; other integer
  or boolean arrays are refused (their scale is unknown);
- audio (`.wav`, `.flac`, `.ogg`, `.aiff`): the zoo's log-Mel pipeline
  (`spzoo.data.audio.preprocess_file`), one example per piece of the clip.

`expand_inputs` turns the command line's files, folders and globs into the
list of files to read.
"""

import glob
from pathlib import Path

import numpy as np

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


def _read_npy(path: Path, input_shape: tuple, expected: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"Cannot read {str(path)!r} as .npy: {error}") from error
    if x.dtype in PIXEL_SCALES:
        x = x.astype(np.float32) / PIXEL_SCALES[x.dtype]
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


def read_input(path, input_shape, clip_seconds: float = 1.0) -> np.ndarray:
    """Returns the float32 batch `(N, H, W, C)`, N >= 1, that file `path` holds.

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
    if suffix == ".npy":
        x = _read_npy(path, input_shape, expected)
    elif suffix in IMAGE_SUFFIXES:
        x = _read_image(path, input_shape)
    elif suffix in AUDIO_SUFFIXES:
        from spzoo.data import audio
        from spzoo.data.audio_config import AudioConfig

        if not 0 < clip_seconds <= MAX_CLIP_SECONDS:
            raise ValueError(
                f"`--clip-seconds` must be in (0, {MAX_CLIP_SECONDS:g}]; received "
                f"{clip_seconds!r}."
            )
        x = np.asarray(audio.preprocess_file(str(path), AudioConfig(clip_seconds)))
        if x.shape[1:] != input_shape:
            raise ValueError(
                f"Audio {str(path)!r} gives log-Mel images of shape {x.shape[1:]}"
                f" at clip_seconds={clip_seconds}; the model expects {input_shape}."
            )
        check_finite(x, f"Audio {str(path)!r} (log-Mel)")
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
