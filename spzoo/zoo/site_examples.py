"""Evaluation examples bundled into the zoo site for the in-browser demo.

`bundle(dataset, split, classes, per_class)` takes the first `per_class`
examples of each class from a dataset's evaluation split, in the split's
order, preprocessed exactly as the models receive them (the dataset's
registered loader, as `spzoo.data.load` reads it),
and returns them as JSON-ready data: each example's float32 values as
base64 (little-endian, exact; the page decodes them into a
`Float32Array`), its index in the split and its label.
"""

import base64

import numpy as np

from spzoo import data

FORMAT = "spzoo-site-examples/1"


def _stream(dataset: str, split: str):
    """`(x, y)` pairs of a split in order: straight from the registry's
    loader when it gives NumPy arrays (no TensorFlow import), else through
    `spzoo.data.load`."""
    if data.get(dataset).modality != "image":  # audio loaders use TensorFlow
        from spzoo.quiet import import_tensorflow

        import_tensorflow()  # without its start-up lines
    loaded = data.get(dataset).loader(split)
    if isinstance(loaded, tuple):
        yield from zip(*loaded, strict=True)
        return
    yield from data.load(
        dataset, split, batch_size=None, shuffle=False
    ).as_numpy_iterator()


def select(dataset: str, split: str, num_classes: int, per_class: int) -> list:
    """`[(index, x, label), ...]`: the first `per_class` examples of every
    class of `split`, in the split's order (stops reading once it has them)."""
    wanted = {label: per_class for label in range(num_classes)}
    chosen = []
    for index, (x, y) in enumerate(_stream(dataset, split)):
        label = int(y)
        if wanted.get(label, 0) > 0:
            wanted[label] -= 1
            chosen.append((index, np.asarray(x, np.float32), label))
            if not any(wanted.values()):
                break
    return chosen


def encode(x: np.ndarray) -> str:
    """Base64 of `x` as little-endian float32 (the page's `Float32Array`)."""
    return base64.b64encode(np.ascontiguousarray(x, "<f4").tobytes()).decode("ascii")


def decode(text: str, shape) -> np.ndarray:
    """The inverse of `encode`: a float32 array of `shape`."""
    return np.frombuffer(base64.b64decode(text), "<f4").reshape(shape)


def bundle(dataset: str, split: str, classes: list, per_class: int) -> dict:
    """The examples file of a dataset (`examples/<dataset>.json` in the site).

    Returns:
        `{"format", "dataset", "split", "shape", "classes", "examples":
        [{"index", "label", "data"}]}`, `data` as `encode` writes it.
    """
    if per_class < 1:
        raise ValueError(f"`per_class` must be >= 1; received {per_class}.")
    chosen = select(dataset, split, len(classes), per_class)
    if not chosen:
        raise ValueError(f"Dataset {dataset!r} ({split}) yielded no examples.")
    return {
        "format": FORMAT,
        "dataset": dataset,
        "split": split,
        "shape": list(chosen[0][1].shape),
        "classes": list(classes),
        "examples": [
            {"index": index, "label": label, "data": encode(x)}
            for index, x, label in chosen
        ],
    }
