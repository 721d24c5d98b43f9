"""The paper's audio preprocessing as a `tf.data` pipeline.

Paper ("Data Preparation"): clip or pad recordings to the dataset's most
common length in seconds; split recordings over 5 s into 5 s pieces;
resample to 16 kHz; log-Mel spectrogram with a 512-point window and a
256-point hop, with 32 (1-2 s), 64 (3-4 s) or 128 (5 s) Mel channels; then
linear interpolation to 32x32, 64x64 or 128x128.

Backends (checked when this module is imported):

- tensorflow-io 0.37.1 supplies the spectrogram and Mel scale
  (`tfio.audio.spectrogram`, `tfio.audio.melscale`: pure Python, they work on
  TensorFlow 2.21). Its native ops (`AudioIOTensor`, `tfio.audio.resample`,
  its decoders) do not load on TensorFlow 2.21 and are not used.
- Decoding: 16-bit PCM WAV with `tf.audio.decode_wav` (a TensorFlow op);
  every other format libsndfile reads (WAV of other sample formats, FLAC,
  OGG/Vorbis, AIFF, MP3 with libsndfile >= 1.1) with `soundfile` inside the
  pipeline (`tf.numpy_function`).
- Resampling: a band-limited polyphase resampler in TensorFlow ops (Kaiser
  windowed-sinc FIR, the filter `scipy.signal.resample_poly` designs).
"""

import dataclasses
import functools
import math
import os
import struct
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

from spzoo.data.audio_config import (  # noqa: F401  (re-exported)
    HOP,
    LOG_FLOOR,
    PIECE_SECONDS,
    PROGRESS_MIN_FILES,
    TARGET_RATE,
    WINDOW,
    AudioConfig,
    mels_for_seconds,
    most_common_seconds,
)


def _import_backends():
    try:
        import soundfile
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "spzoo.data.audio needs `soundfile` (pip install soundfile) to read "
            "FLAC/OGG/MP3 and non-16-bit WAV files."
        ) from e
    try:
        with warnings.catch_warnings():
            # Its native ops fail to load on TF 2.21 and it warns about it.
            warnings.simplefilter("ignore")
            import tensorflow_io as tfio
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "spzoo.data.audio needs `tensorflow-io` (pip install "
            "'tensorflow-io>=0.37.1,<0.38') for its spectrogram and Mel scale."
        ) from e
    for fn in ("spectrogram", "melscale"):
        if not callable(getattr(tfio.audio, fn, None)):
            raise ImportError(
                f"tensorflow-io {tfio.__version__} lacks `tfio.audio.{fn}`; "
                "spzoo.data.audio needs tensorflow-io 0.37.x."
            )
    return soundfile, tfio


sf, tfio = _import_backends()


def backend_report() -> str:
    """One line naming the libraries that do each step of the pipeline."""
    return (
        f"tensorflow-io {tfio.__version__} (spectrogram, melscale; native ops "
        f"unused), tf.audio.decode_wav (16-bit PCM WAV), soundfile "
        f"{sf.__version__} / libsndfile {sf.__libsndfile_version__} (other "
        "WAV, FLAC, OGG, AIFF, MP3), TensorFlow polyphase resampler"
    )


class AudioFileError(ValueError):
    """An audio file that cannot be used; the message names the file."""


@dataclasses.dataclass(frozen=True)
class AudioFileInfo:
    """Header facts about one audio file.

    Attributes:
        path: The file.
        rate: Sample rate in Hz.
        frames: Samples per channel.
        channels: Number of channels (averaged to mono when decoded).
        tf_decodable: True for 16-bit PCM WAV (decoded by a TensorFlow op).
    """

    path: str
    rate: int
    frames: int
    channels: int
    tf_decodable: bool

    @property
    def duration(self) -> float:
        return self.frames / self.rate


def _wav_data_sizes(path: str) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF WAV's `data` chunk, else None."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                return chunk_size, size - pos - 8
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def probe(path: str, expected_rate: int | None = None) -> AudioFileInfo:
    """Reads and checks the header of one audio file.

    Args:
        path: The audio file.
        expected_rate: If given, the sample rate the dataset promises; a file
            with another rate is an error.

    Returns:
        The file's `AudioFileInfo`.

    Raises:
        FileNotFoundError: `path` does not exist.
        AudioFileError: The file is empty, unreadable, truncated, holds no
            samples or has the wrong sample rate.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise AudioFileError(f"Audio file is empty: {path}")
    try:
        info = sf.info(path)
    except Exception as e:  # libsndfile raises its own error types
        raise AudioFileError(f"Unreadable audio file {path}: {e}") from e
    if info.frames <= 0:
        raise AudioFileError(f"Audio file holds no samples: {path}")
    is_wav = info.format == "WAV"
    if is_wav:
        sizes = _wav_data_sizes(path)
        if sizes is not None and sizes[1] < sizes[0]:
            raise AudioFileError(
                f"Truncated WAV file {path}: its header declares {sizes[0]} "
                f"bytes of samples, the file holds {sizes[1]}."
            )
    if expected_rate is not None and info.samplerate != expected_rate:
        raise AudioFileError(
            f"Audio file {path} has sample rate {info.samplerate} Hz; this "
            f"dataset's files are {expected_rate} Hz (`expected_rate`)."
        )
    return AudioFileInfo(
        path=path,
        rate=int(info.samplerate),
        frames=int(info.frames),
        channels=int(info.channels),
        tf_decodable=is_wav and info.subtype == "PCM_16",
    )


def scan(
    paths: list[str],
    on_error: str = "raise",
    expected_rate: int | None = None,
) -> tuple[list[AudioFileInfo], list[tuple[str, str]]]:
    """Probes every file before the pipeline decodes any.

    Args:
        paths: Audio files.
        on_error: `"raise"` (the first bad file raises, naming it) or
            `"skip"` (bad files are left out, counted, and reported in a
            warning naming the first few).
        expected_rate: Passed to `probe`.

    Returns:
        `(infos, skipped)`: infos of the good files in the order of `paths`,
        and `(path, reason)` for each skipped file.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"`on_error` must be 'raise' or 'skip'; received {on_error!r}."
        )
    infos, skipped = [], []
    step = max(1, len(paths) // 10)
    for done, path in enumerate(paths, 1):
        if len(paths) >= PROGRESS_MIN_FILES and done % step == 0:
            print(
                f"spzoo: checked {done}/{len(paths)} audio files",
                file=sys.stderr,
                flush=True,
            )
        try:
            infos.append(probe(path, expected_rate))
        except (AudioFileError, FileNotFoundError) as e:
            if on_error == "raise":
                raise
            skipped.append((path, str(e)))
    if skipped:
        shown = "; ".join(reason for _, reason in skipped[:3])
        warnings.warn(
            f"Skipped {len(skipped)} of {len(paths)} audio files: {shown}"
            + (" ..." if len(skipped) > 3 else ""),
            stacklevel=2,
        )
    return infos, skipped


@functools.lru_cache(maxsize=32)
def polyphase_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """The anti-aliasing filter of `scipy.signal.resample_poly`, by phase.

    Args:
        up: Upsampling factor.
        down: Downsampling factor.

    Returns:
        `(table, half_len)`: float32 `(up, K)` taps with `table[p, k] =
        h[p + k * up]`, and the filter's delay in upsampled samples.
    """
    from scipy.signal import firwin

    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    k = -(-len(h) // up)
    h = np.concatenate([h, np.zeros(k * up - len(h))])
    table = h.reshape(k, up).T.astype("float32")
    table.flags.writeable = False  # shared by the cache
    return table, half_len


def _polyphase(x, table: np.ndarray, half_len: int, up: int, down: int):
    """Resamples 1-D `x` by `up/down` (output length ceil(n * up / down))."""
    import tensorflow as tf

    k = table.shape[1]
    n = tf.shape(x, out_type=tf.int64)[0]
    n_out = (n * up + down - 1) // down
    t = tf.range(n_out, dtype=tf.int64) * down + half_len
    base = tf.cast(t // up, tf.int32)
    phase = tf.cast(t % up, tf.int32)
    padded = tf.concat(
        [tf.zeros([k], x.dtype), x, tf.zeros([half_len // up + 2], x.dtype)], 0
    )
    idx = base[:, None] - tf.range(k)[None, :] + k
    weights = tf.gather(tf.constant(table), phase)
    return tf.reduce_sum(weights * tf.gather(padded, idx), axis=1)


def resample(x, rate: int, target: int = TARGET_RATE) -> "tf.Tensor":
    """Band-limited resampling of a 1-D float waveform from `rate` to `target`.

    Args:
        x: 1-D float32 tensor or array.
        rate: Its sample rate in Hz (a Python int).
        target: The output sample rate in Hz.

    Returns:
        1-D float32 tensor of `ceil(len(x) * target / rate)` samples.
    """
    import tensorflow as tf

    if int(rate) <= 0 or int(target) <= 0:
        raise ValueError(f"`rate` and `target` must be > 0; got {rate}, {target}.")
    x = tf.convert_to_tensor(x, tf.float32)
    g = math.gcd(int(rate), int(target))
    up, down = int(target) // g, int(rate) // g
    if up == down:
        return x
    table, half_len = polyphase_filter(up, down)
    return _polyphase(x, table, half_len, up, down)


def source_frames(config: AudioConfig, rate: int) -> int:
    """Input samples at `rate` that the first `config.clip_seconds` need.

    The clip plus a margin longer than the resampling filter's half-length,
    so clipping before resampling gives the same samples as after.

    Args:
        config: The `AudioConfig`.
        rate: The file's sample rate in Hz.
    """
    g = math.gcd(int(rate), int(config.rate))
    up, down = int(config.rate) // g, int(rate) // g
    margin = 10 * max(up, down) // up + 2  # polyphase_filter's half_len / up
    return int(math.ceil(config.clip_seconds * rate)) + margin


def _read_with_soundfile(path, max_frames=-1) -> np.ndarray:
    path = path.item() if isinstance(path, np.ndarray) else path
    path = path.decode() if isinstance(path, bytes) else str(path)
    try:
        data, _ = sf.read(path, frames=int(max_frames), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises its own error types
        raise AudioFileError(f"Cannot decode audio file {path}: {e}") from e
    return data.mean(axis=1).astype("float32")


def decode(path, tf_decodable, max_frames=-1) -> "tf.Tensor":
    """Decodes one file to a mono float32 waveform in [-1, 1] (graph op).

    Args:
        path: Scalar string tensor.
        tf_decodable: Scalar bool tensor: True for 16-bit PCM WAV.
        max_frames: Scalar int: read at most this many samples (-1: all).

    Returns:
        1-D float32 tensor.
    """
    import tensorflow as tf

    max_frames = tf.cast(max_frames, tf.int64)

    def with_tf():
        audio, _ = tf.audio.decode_wav(tf.io.read_file(path))
        audio = tf.reduce_mean(audio, axis=1)
        size = tf.shape(audio, out_type=tf.int64)[0]
        return audio[: tf.where(max_frames < 0, size, max_frames)]

    def with_soundfile():
        audio = tf.numpy_function(_read_with_soundfile, [path, max_frames], tf.float32)
        return tf.reshape(audio, [-1])

    return tf.cond(tf_decodable, with_tf, with_soundfile)


def to_pieces(x, config: AudioConfig) -> "tf.Tensor":
    """Clips or zero-pads a 16 kHz waveform, then cuts it into pieces.

    Args:
        x: 1-D float32 waveform at `config.rate`.
        config: The `AudioConfig`.

    Returns:
        `(num_pieces, piece_length)` float32 tensor.
    """
    import tensorflow as tf

    total = config.num_pieces * config.piece_length
    clip = min(int(round(config.clip_seconds * config.rate)), total)
    x = x[:clip]
    x = tf.pad(x, [[0, total - tf.shape(x)[0]]])
    return tf.reshape(x, [config.num_pieces, config.piece_length])


def log_mel_image(pieces, config: AudioConfig) -> "tf.Tensor":
    """Log-Mel spectrogram images of waveform pieces.

    Power spectrogram (periodic Hann window of `config.window` points, hop
    `config.hop`, frames padded at the end) -> Mel scale (HTK formula,
    0 Hz to Nyquist) -> natural log of (Mel power + 1e-6) -> bilinear
    ("linear") interpolation of the (Mel, time) image to a square.

    Args:
        pieces: `(P, samples)` float32 waveforms at `config.rate`.
        config: The `AudioConfig`.

    Returns:
        `(P, size, size, 1)` float32 images; rows are Mel channels (low
        first), columns are time frames.
    """
    import tensorflow as tf

    magnitude = tfio.audio.spectrogram(
        pieces, nfft=config.window, window=config.window, stride=config.hop
    )
    mel = tfio.audio.melscale(
        tf.square(magnitude),
        rate=config.rate,
        mels=config.num_mels,
        fmin=0,
        fmax=config.rate // 2,
    )
    # expand_dims, not [..., None]: TFLite's StridedSlice takes no new axis.
    image = tf.expand_dims(tf.transpose(tf.math.log(mel + LOG_FLOOR), [0, 2, 1]), -1)
    size = config.image_size
    return tf.image.resize(image, [size, size], method="bilinear")


def preprocess_waveform(x, rate: int, config: AudioConfig) -> "tf.Tensor":
    """Resample, clip/pad, cut into pieces and log-Mel one waveform.

    Args:
        x: 1-D float32 waveform.
        rate: Its sample rate (a Python int).
        config: The `AudioConfig`.

    Returns:
        `(P, size, size, 1)` float32 images.
    """
    x = x[: source_frames(config, rate)]
    return log_mel_image(to_pieces(resample(x, rate, config.rate), config), config)


def preprocess_file(path: str, config: AudioConfig) -> "tf.Tensor":
    """Eager, one file: what the pipeline does, for loops and checks.

    Args:
        path: The audio file.
        config: The `AudioConfig`.

    Returns:
        `(P, size, size, 1)` float32 images.
    """
    info = probe(path)
    x = _read_with_soundfile(path, source_frames(config, info.rate))
    return preprocess_waveform(x, info.rate, config)


def dataset_from_files(
    infos: list[AudioFileInfo],
    labels,
    config: AudioConfig,
    cache: bool | str = True,
    num_parallel_calls: int | None = None,
) -> "tf.data.Dataset":
    """The audio pipeline over probed files, as an unbatched `tf.data.Dataset`.

    Decoding, resampling, clipping, piece cutting and the log-Mel image are
    TensorFlow ops in one parallel `map`; pieces are unbatched into examples
    and the result is cached (see `cache`).

    Args:
        infos: `AudioFileInfo`s from `scan`.
        labels: One int label per file.
        config: The `AudioConfig`.
        cache: `True`: cache the preprocessed examples in memory; a string:
            in files with that prefix (`tf.data.Dataset.cache`); `False`:
            preprocess again every epoch.
        num_parallel_calls: Parallel map calls; `None` = `tf.data.AUTOTUNE`.

    Returns:
        A dataset of `(float32 (size, size, 1) image, int32 label)`, with
        `config.num_pieces` examples per file, in file order.
    """
    import tensorflow as tf

    if len(infos) != len(labels):
        raise ValueError(
            f"`labels` has {len(labels)} entries for {len(infos)} files (`infos`)."
        )
    if not infos:
        raise ValueError("`infos` is empty: no audio files to load.")
    rates = sorted({i.rate for i in infos})
    branches = [lambda x, rate=rate: resample(x, rate, config.rate) for rate in rates]
    ds = tf.data.Dataset.from_tensor_slices(
        (
            [i.path for i in infos],
            [i.tf_decodable for i in infos],
            np.asarray([rates.index(i.rate) for i in infos], "int32"),
            np.asarray([source_frames(config, i.rate) for i in infos], "int64"),
            np.asarray(labels, "int32"),
        )
    )

    def prepare(path, tf_decodable, rate_index, max_frames, label):
        x = decode(path, tf_decodable, max_frames)
        x = tf.switch_case(rate_index, [lambda f=f: f(x) for f in branches])
        images = log_mel_image(to_pieces(x, config), config)
        return images, tf.fill([config.num_pieces], label)

    ds = ds.map(
        prepare,
        num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
        deterministic=True,
    ).unbatch()
    ds = ds.apply(
        tf.data.experimental.assert_cardinality(len(infos) * config.num_pieces)
    )
    if isinstance(cache, str):
        return ds.cache(cache)
    return ds.cache() if cache else ds


def from_files(
    paths: list[str],
    labels,
    config: AudioConfig,
    on_error: str = "raise",
    expected_rate: int | None = None,
    cache: bool | str = True,
) -> "tf.data.Dataset":
    """Probes `paths`, then returns their pipeline (see `dataset_from_files`).

    Warns when the most common length of these files differs from
    `config.clip_seconds` (every file is still clipped/padded to it, so the
    registered `input_shape` holds).

    Args:
        paths: Audio files.
        labels: One int label per file.
        config: The `AudioConfig`.
        on_error: `"raise"` or `"skip"` bad files (see `scan`).
        expected_rate: The sample rate every file must have, if any.
        cache: Passed to `dataset_from_files`.

    Returns:
        An unbatched `tf.data.Dataset` of `(image, label)`.
    """
    if len(paths) != len(labels):
        raise ValueError(
            f"`labels` has {len(labels)} entries for {len(paths)} `paths`."
        )
    label_of = dict(zip(paths, labels, strict=True))
    infos, _ = scan(paths, on_error=on_error, expected_rate=expected_rate)
    common = most_common_seconds([i.duration for i in infos]) if infos else None
    if common is not None and common != round(config.clip_seconds):
        warnings.warn(
            f"The most common length of these {len(infos)} recordings is {common} s; "
            f"clipping/padding them to this dataset's {config.clip_seconds} s.",
            stacklevel=2,
        )
    return dataset_from_files(infos, [label_of[i.path] for i in infos], config, cache)
