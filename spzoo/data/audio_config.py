"""The numbers of the paper's audio preprocessing, without heavy imports.

`AudioConfig` says how a dataset's recordings become images; registry
entries use it for their `input_shape` without loading the audio backends
(`spzoo.data.audio`).
"""

import collections
import dataclasses
import math

TARGET_RATE = 16000
WINDOW = 512
HOP = 256
PIECE_SECONDS = 5.0
LOG_FLOOR = 1e-6
PROGRESS_MIN_FILES = 2000  # scans of this many files report progress


def most_common_seconds(durations) -> int:
    """The most common recording length in whole seconds (at least 1).

    Lengths are rounded to the nearest second (under 0.5 s counts as 1 s);
    ties go to the shorter length.

    Args:
        durations: Recording lengths in seconds.
    """
    counts = collections.Counter(max(1, int(round(d))) for d in durations)
    if not counts:
        raise ValueError("`durations` is empty: no recordings to measure.")
    top = max(counts.values())
    return min(s for s, c in counts.items() if c == top)


def mels_for_seconds(seconds: float) -> int:
    """Mel channels for a piece of `seconds`: 32 (<=2 s), 64 (<=4 s), else 128.

    Args:
        seconds: Length of one piece (at most 5 s in the paper).
    """
    if seconds <= 0:
        raise ValueError(f"`seconds` must be > 0; received {seconds!r}.")
    if seconds <= 2:
        return 32
    if seconds <= 4:
        return 64
    return 128


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """How recordings become images.

    Attributes:
        clip_seconds: Every recording is clipped or zero-padded (at the end)
            to this length: the dataset's most common length.
        piece_seconds: Recordings longer than this are cut into pieces of
            this length (the last one zero-padded), each an example.
        rate: Sample rate the recordings are resampled to.
        window: STFT window (and FFT) length in samples.
        hop: STFT hop in samples.
        mels: Mel channels; `None` picks 32/64/128 by piece length.
        size: Side of the square output image; `None` = `mels`.
    """

    clip_seconds: float
    piece_seconds: float = PIECE_SECONDS
    rate: int = TARGET_RATE
    window: int = WINDOW
    hop: int = HOP
    mels: int | None = None
    size: int | None = None

    def __post_init__(self):
        if self.clip_seconds <= 0:
            raise ValueError(f"`clip_seconds` must be > 0; got {self.clip_seconds}.")
        if self.piece_seconds <= 0:
            raise ValueError(f"`piece_seconds` must be > 0; got {self.piece_seconds}.")

    @property
    def num_pieces(self) -> int:
        return max(1, math.ceil(self.clip_seconds / self.piece_seconds - 1e-9))

    @property
    def piece_length(self) -> int:
        return int(round(min(self.clip_seconds, self.piece_seconds) * self.rate))

    @property
    def num_mels(self) -> int:
        return self.mels or mels_for_seconds(min(self.clip_seconds, self.piece_seconds))

    @property
    def image_size(self) -> int:
        return self.size or self.num_mels

    @property
    def input_shape(self) -> tuple:
        return (self.image_size, self.image_size, 1)
