"""A synthetic Speech-Commands-like set, spoken by espeak-ng and flite.

Each clip is one word said by a randomly drawn engine, voice, speed and
pitch, at a random gain and onset, with white noise at a random SNR. The
draws come from one seeded generator, so a configuration always gives the
same files. The set is written once under the cache directory in the
Speech Commands layout (`<word>/<word>_<n>.wav`, `testing_list.txt`,
`validation_list.txt`) and read by the same loader as Speech Commands.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spzoo.io import atomic_path, remove_stale, temp_path

DIGITS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
COMMANDS = DIGITS + (
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
)
ESPEAK_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
    "Andy",
    "Annie",
    "david",
    "linda",
)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
_FORMAT_VERSION = 1


def cache_root() -> str:
    """The cache directory: `$SPZOO_CACHE_DIR` or `~/.cache/spzoo`."""
    return os.environ.get("SPZOO_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "spzoo"
    )


def engines() -> tuple[str, ...]:
    """The speech synthesisers found on `PATH` (`espeak-ng`, `flite`)."""
    return tuple(e for e in ("espeak-ng", "flite") if shutil.which(e))


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What to synthesise.

    Attributes:
        words: The words (classes), in label order.
        variants_per_word: Clips per word.
        seed: Seed of every random draw.
        snr_db: Range of the signal-to-noise ratio of the added white noise.
        max_onset: Largest silence before the word, in seconds.
        eval_fraction: Fraction of each word's clips listed in
            `testing_list.txt` (the eval split).
    """

    words: tuple = COMMANDS
    variants_per_word: int = 60
    seed: int = 0
    snr_db: tuple = (10.0, 40.0)
    max_onset: float = 0.15
    eval_fraction: float = 0.2

    def __post_init__(self):
        if not self.words or len(set(self.words)) != len(self.words):
            raise ValueError(
                f"`words` must be non-empty and distinct; got {self.words}."
            )
        for w in self.words:
            if not w.replace("-", "").isalpha():
                raise ValueError(f"`words` entries must be letters; got {w!r}.")
        if self.variants_per_word < 2:
            raise ValueError(
                f"`variants_per_word` must be >= 2; got {self.variants_per_word}."
            )

    def key(self, available: tuple) -> str:
        """A short hash of the configuration and the engines used."""
        text = json.dumps(
            [dataclasses.asdict(self), list(available), _FORMAT_VERSION], sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plan(config: SynthConfig, available: tuple) -> list[dict]:
    """One dict of random draws per clip, in a fixed order."""
    rng = np.random.default_rng(config.seed)
    clips = []
    for word in config.words:
        n_eval = max(1, int(round(config.eval_fraction * config.variants_per_word)))
        eval_ids = set(rng.permutation(config.variants_per_word)[:n_eval].tolist())
        for n in range(config.variants_per_word):
            engine = available[int(rng.integers(len(available)))]
            if engine == "espeak-ng":
                voice = ESPEAK_VOICES[int(rng.integers(len(ESPEAK_VOICES)))]
                voice += "+" + ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]
            else:
                voice = FLITE_VOICES[int(rng.integers(len(FLITE_VOICES)))]
            clips.append(
                {
                    "word": word,
                    "file": f"{word}/{word}_{n:04d}.wav",
                    "eval": n in eval_ids,
                    "engine": engine,
                    "voice": voice,
                    "speed": float(rng.uniform(0.75, 1.3)),
                    "pitch": float(rng.uniform(0.0, 1.0)),
                    "gain": float(rng.uniform(0.3, 1.0)),
                    "onset": float(rng.uniform(0.0, config.max_onset)),
                    "snr_db": float(rng.uniform(*config.snr_db)),
                    "noise_seed": int(rng.integers(2**31)),
                }
            )
    return clips


def _speak(clip: dict, out_wav: str) -> None:
    if clip["engine"] == "espeak-ng":
        cmd = [
            "espeak-ng",
            "-v",
            clip["voice"],
            "-s",
            str(int(175 * clip["speed"])),
            "-p",
            str(int(20 + 60 * clip["pitch"])),
            "-w",
            out_wav,
            clip["word"],
        ]
    else:
        cmd = [
            "flite",
            "-voice",
            clip["voice"],
            "--setf",
            f"duration_stretch={1.0 / clip['speed']:.3f}",
            "--setf",
            f"int_f0_target_mean={int(90 + 110 * clip['pitch'])}",
            "-t",
            clip["word"],
            "-o",
            out_wav,
        ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isfile(out_wav):
        raise RuntimeError(
            f"{clip['engine']} failed on {clip['word']!r} ({' '.join(cmd)}): "
            f"{result.stderr.strip()}"
        )


def _render(clip: dict, folder: str) -> None:
    """Synthesises one clip, adds onset, gain and noise, writes it atomically."""
    import soundfile as sf

    target = os.path.join(folder, clip["file"])
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        _speak(clip, raw)
        voice, rate = sf.read(raw, dtype="float64", always_2d=True)
    voice = voice.mean(axis=1)
    peak = np.max(np.abs(voice))
    if peak <= 0:
        raise RuntimeError(f"{clip['engine']} produced silence for {clip['word']!r}.")
    voice = voice / peak * clip["gain"]
    voice = np.concatenate([np.zeros(int(clip["onset"] * rate)), voice])
    rng = np.random.default_rng(clip["noise_seed"])
    noise_rms = np.sqrt(np.mean(voice**2)) / 10 ** (clip["snr_db"] / 20)
    audio = np.clip(voice + rng.normal(0.0, noise_rms, voice.shape), -1.0, 1.0)
    with atomic_path(target) as tmp:
        sf.write(tmp, audio.astype("float32"), rate, subtype="PCM_16", format="WAV")


def generate(
    config: SynthConfig = SynthConfig(),
    cache_dir: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> str:
    """Returns the folder of the synthetic set, synthesising it if needed.

    The set is built in a temporary folder next to its final place and
    renamed into place when complete, so an interrupted run leaves no
    partial set behind. Files are byte-identical for the same `config` and
    engines.

    Args:
        config: The `SynthConfig`.
        cache_dir: Parent folder; default `cache_root()`.
        workers: Synthesiser processes run at once.
        progress: Print progress to stderr.

    Returns:
        The folder, in the Speech Commands layout.
    """
    available = engines()
    if not available:
        raise RuntimeError(
            "No speech synthesiser found: install the Debian packages espeak-ng "
            "and/or flite (see debian-packages.txt)."
        )
    root = os.path.join(cache_dir or cache_root(), "spoken_commands")
    folder = os.path.join(root, config.key(available))
    if os.path.isfile(os.path.join(folder, "manifest.json")):
        return folder
    os.makedirs(root, exist_ok=True)
    remove_stale(root)  # staging folders of killed runs
    work = str(temp_path(folder))
    os.makedirs(work)
    try:
        clips = _plan(config, available)
        for word in config.words:
            os.makedirs(os.path.join(work, word))
        step = max(1, len(clips) // 10)
        with ThreadPoolExecutor(max(1, int(workers))) as pool:
            for done, _ in enumerate(pool.map(lambda c: _render(c, work), clips), 1):
                if progress and (done % step == 0 or done == len(clips)):
                    print(
                        f"spzoo: synthesising spoken commands {done}/{len(clips)}",
                        file=sys.stderr,
                        flush=True,
                    )
        with open(os.path.join(work, "testing_list.txt"), "w") as f:
            f.writelines(c["file"] + "\n" for c in clips if c["eval"])
        open(os.path.join(work, "validation_list.txt"), "w").close()
        with open(os.path.join(work, "manifest.json"), "w") as f:
            json.dump(
                {"config": dataclasses.asdict(config), "clips": clips}, f, indent=1
            )
        try:
            os.replace(work, folder)
        except OSError:
            if not os.path.isfile(os.path.join(folder, "manifest.json")):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder
