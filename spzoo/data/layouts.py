"""Readers of the standard on-disk layouts of the paper's datasets.

Each reader takes the dataset's root folder and a split and returns the
file paths and labels (audio) or arrays (CIFAR); a missing folder, a
missing metadata file, a label folder with no files or a file the metadata
names but the disk lacks is a clear error naming the path.
"""

import csv
import os
import pickle
import re
import unicodedata

import numpy as np

from spzoo.data.visual import IMAGE_EXTENSIONS, split_80_20

FileList = tuple[list[str], list[int]]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3", ".au")


def data_root(name: str, data_dir: str | None = None) -> str:
    """Where dataset `name` lives: `data_dir`, else `$SPZOO_DATA_DIR/name`.

    Without `SPZOO_DATA_DIR` the parent folder is `~/spzoo_data`.

    Args:
        name: The registry name.
        data_dir: The user's explicit folder, if any.
    """
    if data_dir:
        return os.path.expanduser(data_dir)
    parent = os.environ.get("SPZOO_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "spzoo_data"
    )
    return os.path.join(parent, name)


def require(path: str, what: str, layout: str) -> str:
    """Returns `path`, or raises FileNotFoundError saying what is missing.

    Args:
        path: The file or folder that must exist.
        what: What it is, for the message (e.g. "ESC-50 metadata").
        layout: The expected layout, for the message.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{what} not found: {path} does not exist. Expected layout: {layout}. "
            "Pass `data_dir=` or set SPZOO_DATA_DIR to the folder holding it."
        )
    return path


def files_in(folder: str, extensions: tuple = AUDIO_EXTENSIONS) -> list[str]:
    """Sorted files with `extensions` directly inside `folder`; an error if none.

    Args:
        folder: A label folder.
        extensions: Lowercase file name endings to take.
    """
    files = sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(extensions) and not f.startswith(".")
    )
    if not files:
        raise FileNotFoundError(
            f"Label folder {folder} has no files of type {', '.join(extensions)}."
        )
    return files


def folder_key(name: str) -> str:
    """A folder or class name reduced to lowercase ASCII words joined by `_`.

    Matches e.g. the folder "Albrecht_Du\u0308rer" to the class
    "Albrecht_Durer".

    Args:
        name: The name to reduce.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "_".join(re.findall(r"[a-z0-9]+", ascii_name.lower()))


def _split_indices(n: int, split: str, seed: int) -> list[int]:
    """80/20 split of `n` files; a lone file goes to train."""
    if n > 1:
        return split_80_20(n, split, seed).tolist()
    return [0] if split == "train" else []


def label_of(name: str, class_names: tuple, where: str) -> int:
    """The index of class `name`; an error naming `where` if it is unknown.

    Args:
        name: A class name read from a folder, file name or metadata.
        class_names: The registered classes.
        where: The folder or file it came from, for the message.
    """
    if name not in class_names:
        raise ValueError(
            f"{where}: class {name!r} is not one of this dataset's classes "
            f"{list(class_names)}."
        )
    return class_names.index(name)


SPEECH_COMMANDS_LAYOUT = (
    "<root>/<word>/*.wav (16 kHz), <root>/testing_list.txt, "
    "<root>/validation_list.txt; folders starting with '_' are ignored"
)


def speech_commands(root: str, split: str, class_names: tuple) -> FileList:
    """Files of the Speech Commands layout.

    Train is every file in neither `validation_list.txt` nor
    `testing_list.txt`; eval is `testing_list.txt` (the predefined split).

    Args:
        root: The folder holding the word folders and the lists.
        split: `"train"` or `"eval"`.
        class_names: The registered words; a word folder outside them is an
            error.

    Returns:
        `(paths, labels)`.
    """
    require(root, "Speech Commands folder", SPEECH_COMMANDS_LAYOUT)
    testing = os.path.join(root, "testing_list.txt")
    require(testing, "Speech Commands testing list", SPEECH_COMMANDS_LAYOUT)
    listed = {}
    for name in ("testing_list.txt", "validation_list.txt"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path) as f:
                listed[name] = {line.strip() for line in f if line.strip()}
    words = sorted(
        d
        for d in os.listdir(root)
        if os.path.isdir(os.path.join(root, d)) and d[0] not in "_."
    )
    if not words:
        raise FileNotFoundError(
            f"Speech Commands folder {root} has no word folders "
            f"(layout: {SPEECH_COMMANDS_LAYOUT})."
        )
    held_out = listed["testing_list.txt"] | listed.get("validation_list.txt", set())
    paths, labels = [], []
    for word in words:
        label = label_of(word, class_names, f"Folder {os.path.join(root, word)}")
        for path in files_in(os.path.join(root, word)):
            rel = f"{word}/{os.path.basename(path)}"
            keep = (
                rel in listed["testing_list.txt"]
                if split == "eval"
                else rel not in held_out
            )
            if keep:
                paths.append(path)
                labels.append(label)
    return paths, labels


ESC50_LAYOUT = "<root>/meta/esc50.csv and <root>/audio/*.wav (folds 1-5)"


def esc50(root: str, split: str, class_names: tuple) -> FileList:
    """Files of ESC-50: folds 1-4 train, fold 5 eval (first 80% of folds).

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.

    Returns:
        `(paths, labels)`.
    """
    meta = require(
        os.path.join(root, "meta", "esc50.csv"), "ESC-50 metadata", ESC50_LAYOUT
    )
    paths, labels = [], []
    with open(meta, newline="") as f:
        for row in csv.DictReader(f):
            fold, target = int(row["fold"]), int(row["target"])
            if target >= len(class_names) or class_names[target] != row["category"]:
                raise ValueError(
                    f"{meta}: {row['filename']} has target {target} / category "
                    f"{row['category']!r}, which disagree with the ESC-50 classes."
                )
            if (fold <= 4) == (split == "train"):
                path = os.path.join(root, "audio", row["filename"])
                paths.append(require(path, "ESC-50 audio file", ESC50_LAYOUT))
                labels.append(target)
    return paths, labels


URBANSOUND8K_LAYOUT = (
    "<root>/metadata/UrbanSound8K.csv and <root>/audio/fold1..fold10/*.wav"
)


def urbansound8k(root: str, split: str, class_names: tuple) -> FileList:
    """Files of UrbanSound8K: folds 1-8 train, folds 9-10 eval.

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.

    Returns:
        `(paths, labels)`.
    """
    meta = require(
        os.path.join(root, "metadata", "UrbanSound8K.csv"),
        "UrbanSound8K metadata",
        URBANSOUND8K_LAYOUT,
    )
    paths, labels = [], []
    with open(meta, newline="") as f:
        for row in csv.DictReader(f):
            fold, target = int(row["fold"]), int(row["classID"])
            if target >= len(class_names) or class_names[target] != row["class"]:
                raise ValueError(
                    f"{meta}: {row['slice_file_name']} has classID {target} / class "
                    f"{row['class']!r}, which disagree with the UrbanSound8K classes."
                )
            if (fold <= 8) == (split == "train"):
                path = os.path.join(
                    root, "audio", f"fold{fold}", row["slice_file_name"]
                )
                paths.append(
                    require(path, "UrbanSound8K audio file", URBANSOUND8K_LAYOUT)
                )
                labels.append(target)
    return paths, labels


GTZAN_LAYOUT = "<root>/genres/<genre>/*.wav (or genres_original/, or <root>/<genre>/)"


def class_folders(
    root: str,
    split: str,
    class_names: tuple,
    seed: int = 0,
    extensions: tuple = AUDIO_EXTENSIONS,
) -> FileList:
    """Files of a `<root>/<class>/*` layout with a random 80/20 split.

    Folder names are matched to `class_names` by `folder_key`; a folder that
    matches no class is an error. Every class folder is split on its own (by
    file, so pieces or crops of one file never straddle train and eval).

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.
        seed: Seed of the 80/20 split.
        extensions: File name endings to take.

    Returns:
        `(paths, labels)`.
    """
    keys = {folder_key(c): i for i, c in enumerate(class_names)}
    paths, labels = [], []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder) or name[0] in "_.":
            continue
        if folder_key(name) not in keys:
            raise ValueError(
                f"Folder {folder}: class {name!r} is not one of this dataset's "
                f"classes {list(class_names)}."
            )
        files = files_in(folder, extensions)
        idx = _split_indices(len(files), split, seed)
        paths += [files[i] for i in idx]
        labels += [keys[folder_key(name)]] * len(idx)
    if not paths and split == "train":
        raise FileNotFoundError(
            f"No class folders of {list(class_names)} with files under {root}."
        )
    return paths, labels


def gtzan(root: str, split: str, class_names: tuple, seed: int = 0) -> FileList:
    """Files of GTZAN (genre folders) with a random 80/20 split per genre.

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.
        seed: Seed of the 80/20 split.

    Returns:
        `(paths, labels)`.
    """
    require(root, "GTZAN folder", GTZAN_LAYOUT)
    for sub in ("genres_original", "genres"):
        if os.path.isdir(os.path.join(root, sub)):
            root = os.path.join(root, sub)
            break
    if not any(os.path.isdir(os.path.join(root, g)) for g in class_names):
        raise FileNotFoundError(
            f"GTZAN folder {root} has none of the genre folders {list(class_names)} "
            f"(layout: {GTZAN_LAYOUT})."
        )
    return class_folders(root, split, class_names, seed)


CIFAR_LAYOUT = {
    10: "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} "
    "(python version)",
    100: "<root>/cifar-100-python/{train,test,meta} (python version)",
}
# Sub-folder of the python-version archive, and its metadata file and key.
CIFAR_FOLDER = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
CIFAR_META = {10: ("batches.meta", b"label_names"), 100: ("meta", b"fine_label_names")}


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(f"Cannot read CIFAR file {path}: {e}") from e


def cifar_folder(root: str, classes: int) -> str:
    """The folder holding the CIFAR batches: `<root>/<archive folder>` or `root`.

    Args:
        root: Folder holding `cifar-10-batches-py/` or `cifar-100-python/`
            (or that folder itself).
        classes: 10 or 100.
    """
    if classes not in CIFAR_FOLDER:
        raise ValueError(f"`classes` must be 10 or 100; received {classes!r}.")
    sub = os.path.join(root, CIFAR_FOLDER[classes])
    return sub if os.path.isdir(sub) else root


def cifar_label_names(root: str, classes: int) -> tuple[str, ...] | None:
    """The class names a CIFAR copy lists in its own metadata, label = index.

    CIFAR-10 keeps them under `label_names` in `batches.meta`, CIFAR-100 its
    fine labels under `fine_label_names` in `meta`.

    Args:
        root: Folder holding `cifar-10-batches-py/` or `cifar-100-python/`
            (or that folder itself).
        classes: 10 or 100.

    Returns:
        The names, or `None` where the copy has no metadata file.
    """
    folder = cifar_folder(root, classes)
    name, key = CIFAR_META[classes]
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    meta = _unpickle(path)
    if not isinstance(meta, dict) or key not in meta:
        raise ValueError(f"CIFAR metadata {path} lacks {key!r}.")
    return tuple(
        n.decode("ascii") if isinstance(n, bytes) else str(n) for n in meta[key]
    )


def cifar_local(root: str, classes: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a local copy of CIFAR-10/100 (the python-pickle archive, unpacked).

    Args:
        root: Folder holding `cifar-10-batches-py/` or `cifar-100-python/`
            (or that folder itself).
        classes: 10 or 100.
        split: `"train"` or `"eval"`.

    Returns:
        `(x uint8 (N, 32, 32, 3), y int32)`.
    """
    folder = cifar_folder(root, classes)
    if classes == 10:
        names = (
            [f"data_batch_{i}" for i in range(1, 6)]
            if split == "train"
            else ["test_batch"]
        )
        key = b"labels"
    else:
        names, key = (["train"] if split == "train" else ["test"]), b"fine_labels"
    xs, ys = [], []
    for name in names:
        path = require(
            os.path.join(folder, name), f"CIFAR-{classes} batch", CIFAR_LAYOUT[classes]
        )
        batch = _unpickle(path)
        if b"data" not in batch or key not in batch:
            raise ValueError(f"CIFAR batch {path} lacks b'data' or {key!r}.")
        data = np.asarray(batch[b"data"], np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(
                f"CIFAR batch {path} holds images of shape {data.shape[1:]}; "
                "expected rows of 3072 = 3x32x32 bytes."
            )
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[key], np.int32))
    return np.concatenate(xs), np.concatenate(ys)


ARTWORKS_LAYOUT = "<root>/<class>/*.jpg (or <root>/images/images/<class>/, Kaggle)"


def artworks(root: str, split: str, class_names: tuple, seed: int = 0) -> FileList:
    """Image files of an artwork set in class folders, random 80/20 split.

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.
        seed: Seed of the 80/20 split.

    Returns:
        `(paths, labels)`.
    """
    require(root, "Artwork folder", ARTWORKS_LAYOUT)
    for sub in (os.path.join("images", "images"), "images"):
        if os.path.isdir(os.path.join(root, sub)):
            root = os.path.join(root, sub)
            break
    return class_folders(root, split, class_names, seed, IMAGE_EXTENSIONS)


FMA_LAYOUT = "<root>/fma_metadata/tracks.csv and <root>/fma_medium/<NNN>/<NNNNNN>.mp3"


def fma(
    root: str, split: str, class_names: tuple, subset: str = "medium", seed: int = 0
) -> FileList:
    """Files of FMA (`fma_medium` by default) with a random 80/20 split per genre.

    The label is the track's top genre (`track.genre_top` in `tracks.csv`);
    `medium` holds the tracks of the `small` and `medium` subsets.

    Args:
        root: The dataset's folder.
        split: `"train"` or `"eval"`.
        class_names: The registered classes; label = index.
        subset: "small", "medium" or "large".
        seed: Seed of the 80/20 split.

    Returns:
        `(paths, labels)`.
    """
    meta = require(
        os.path.join(root, "fma_metadata", "tracks.csv"), "FMA metadata", FMA_LAYOUT
    )
    audio_dir = require(
        os.path.join(root, f"fma_{subset}"), f"FMA {subset} audio", FMA_LAYOUT
    )
    subsets = {"small": {"small"}, "medium": {"small", "medium"}}.get(
        subset, {"small", "medium", "large"}
    )
    with open(meta, newline="") as f:
        rows = csv.reader(f)
        top, second = next(rows), next(rows)
        next(rows)  # "track_id" row
        columns = list(zip(top, second, strict=True))
        try:
            genre_col = columns.index(("track", "genre_top"))
            subset_col = columns.index(("set", "subset"))
        except ValueError as e:
            raise ValueError(
                f"{meta} lacks the (track, genre_top) or (set, subset) column."
            ) from e
        by_genre: dict[int, list[str]] = {}
        for row in rows:
            if row[subset_col] not in subsets or not row[genre_col]:
                continue
            label = label_of(row[genre_col], class_names, f"{meta}, track {row[0]}")
            tid = f"{int(row[0]):06d}"
            path = os.path.join(audio_dir, tid[:3], f"{tid}.mp3")
            by_genre.setdefault(label, []).append(
                require(path, "FMA audio file", FMA_LAYOUT)
            )
    paths, labels = [], []
    for label in sorted(by_genre):
        files = sorted(by_genre[label])
        idx = _split_indices(len(files), split, seed)
        paths += [files[i] for i in idx]
        labels += [label] * len(idx)
    return paths, labels
