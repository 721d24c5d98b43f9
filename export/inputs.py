"""Reading inference inputs from files: images, `.npy` arrays and audio clips.

- images (`.png`, `.jpg`, `.jpeg`, `.bmp`, `.gif`): `keras.utils.load_img`
  resized to the model's `H x W`, greyscale for one channel and RGB for
  three, scaled to `[0, 1]` (the offline image sets' preprocessing);
- `.npy`: one example `(H, W, C)` or a batch `(N, H, W, C)`, used as is;
- audio (`.wav`, `.flac`, `.ogg`, `.aiff`): the zoo's log-Mel pipeline
  (`spzoo.data.audio.preprocess_file`), one example per piece of the clip.
"""

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def read_input(path, input_shape, clip_seconds: float = 1.0) -> np.ndarray:
    """Returns the float32 batch `(N, H, W, C)` that file `path` holds.

    Raises:
        ValueError: Unknown file type, unreadable file, or an array whose
            shape is not `(H, W, C)` / `(N, H, W, C)`.
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
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as error:
            raise ValueError(f"Cannot read {str(path)!r} as .npy: {error}") from error
        if not (
            np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
        ):
            raise ValueError(
                f"Input {str(path)!r} has dtype {x.dtype}; expected numbers "
                f"({expected})."
            )
        if x.shape == input_shape:
            x = x[None]
        if x.ndim != len(input_shape) + 1 or x.shape[1:] != input_shape:
            raise ValueError(
                f"Input {str(path)!r} has shape {x.shape}; expected {expected}."
            )
        return x.astype(np.float32)
    if suffix in IMAGE_SUFFIXES:
        import keras

        channels = input_shape[-1]
        if channels not in (1, 3, 4):
            raise ValueError(
                f"Image {str(path)!r}: the model takes {channels} channels; "
                "image files give 1 (greyscale), 3 (RGB) or 4 (RGBA)."
            )
        mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]
        try:
            image = keras.utils.load_img(
                path, color_mode=mode, target_size=input_shape[:2]
            )
        except Exception as error:
            raise ValueError(f"Cannot read image {str(path)!r}: {error}") from error
        return (keras.utils.img_to_array(image, dtype="float32") / 255.0)[None]
    if suffix in AUDIO_SUFFIXES:
        from spzoo.data import audio
        from spzoo.data.audio_config import AudioConfig

        x = np.asarray(audio.preprocess_file(str(path), AudioConfig(clip_seconds)))
        if x.shape[1:] != input_shape:
            raise ValueError(
                f"Audio {str(path)!r} gives log-Mel images of shape {x.shape[1:]}"
                f" at clip_seconds={clip_seconds}; the model expects {input_shape}."
            )
        return x.astype(np.float32)
    raise ValueError(
        f"Input {str(path)!r}: expected an image "
        f"({', '.join(IMAGE_SUFFIXES)}), a .npy array or audio "
        f"({', '.join(AUDIO_SUFFIXES)})."
    )
