"""The dataset registry: names -> loaders returning NumPy arrays or tf.data."""

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

MODALITIES = ("image", "audio")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a registered dataset is.

    Attributes:
        name: Registry name, e.g. `"mnist_5k"`.
        input_shape: Shape of one preprocessed example, `(H, W, C)`.
        class_names: Names of the classes, index = label.
        description: One line on the data and its preprocessing.
        source: Where the files come from (package, path or URL).
        loader: Callable `(split, **options) -> (x, y)` NumPy arrays or an
            unbatched `tf.data.Dataset` of `(x, y)`, preprocessed.
        modality: `"image"` or `"audio"`.
        sizes: Examples per split, e.g. `{"train": 4000, "eval": 1000}`;
            `None` where it depends on the user's copy of the files.
        check: Callable `() -> str | None`: `None` when the files are present,
            else a sentence on what is missing (shown by `spzoo data list`).
        paper: `True` for the paper's own datasets (files the user brings).
        flip_augment: Whether a mirrored example is still an example of its
            class, so augmentation may flip it (False for digits and
            characters).
        preprocessing: How a raw image or waveform becomes an example, as
            data (`spzoo.data.preprocessing`): an `ImagePreprocessing` or
            `AudioPreprocessing`, a callable `(**options) -> one of them`
            where it depends on the user's copy (colour statistics), or
            None: [0, 1] scaling of 8-bit images. Read it with
            `spzoo.data.dataset_preprocessing`.
    """

    name: str
    input_shape: tuple
    class_names: tuple
    description: str
    source: str
    loader: Callable = dataclasses.field(repr=False, compare=False)
    modality: str = "image"
    sizes: dict | None = None
    check: Callable | None = dataclasses.field(default=None, repr=False, compare=False)
    paper: bool = False
    flip_augment: bool = True
    preprocessing: object = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(
                f"`modality` must be one of {MODALITIES}; received {self.modality!r}."
            )
        if len(self.input_shape) != 3:
            raise ValueError(
                f"`input_shape` of {self.name!r} must be (H, W, C); "
                f"received {self.input_shape!r}."
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def missing(self) -> str | None:
        """Returns what is missing for this dataset to load, or `None`."""
        return self.check() if self.check is not None else None


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Adds a dataset to the registry (its name must be new).

    Args:
        info: The `DatasetInfo`.

    Returns:
        `info`.
    """
    if info.name in _REGISTRY:
        raise ValueError(f"Dataset {info.name!r} is already registered.")
    _REGISTRY[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Returns the registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> DatasetInfo:
    """Returns the `DatasetInfo` of `name`; a clear error if unknown.

    Args:
        name: A registered dataset name.
    """
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
    augment: bool = False,
    augment_options: dict | None = None,
    **options,
) -> "tf.data.Dataset":
    """Returns `split` of dataset `name` as a batched `tf.data.Dataset`.

    Args:
        name: A registered dataset name.
        split: `"train"` or `"eval"`.
        batch_size: Examples per batch; `None` for unbatched examples.
        shuffle: Shuffle every epoch; defaults to True for `"train"`.
        seed: Seed of the shuffle and of the augmentation.
        augment: Apply the NHN recipe's image augmentation (pad-and-crop,
            horizontal flip where the dataset's `flip_augment` allows it,
            cutout; see `spzoo.data.visual.augment`). Image datasets only.
        augment_options: Keyword arguments of `spzoo.data.visual.augment`
            (`pad`, `cutout`) when `augment` is on; None keeps its defaults.
        **options: Passed to the dataset's loader, e.g. `data_dir=` for the
            paper's datasets or `variants_per_word=` for the synthetic
            spoken commands.

    Returns:
        A dataset of `(image, label)` with float32 NHWC images and int32
        labels.
    """
    import tensorflow as tf

    if split not in ("train", "eval"):
        raise ValueError(f"`split` must be 'train' or 'eval'; received {split!r}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size!r}.")
    info = get(name)
    if augment and info.modality != "image":
        raise ValueError(
            f"`augment=True` is for image datasets; {name!r} is {info.modality}."
        )
    data = info.loader(split, **options)
    if isinstance(data, tf.data.Dataset):
        ds = data
        shape = tuple(ds.element_spec[0].shape)
        count = int(ds.cardinality())
    else:
        x, y = data
        shape = tuple(np.shape(x)[1:])
        count = len(x)
        ds = tf.data.Dataset.from_tensor_slices(
            (np.asarray(x, "float32"), np.asarray(y, "int32"))
        )
    if shape != tuple(info.input_shape):
        raise ValueError(
            f"Dataset {name!r} ({split}) yields examples of shape {shape}; "
            f"its registered `input_shape` is {tuple(info.input_shape)}."
        )
    if shuffle if shuffle is not None else split == "train":
        buffer = count if count > 0 else 10_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if augment:
        import functools

        from spzoo.data.visual import augment as augment_fn

        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            functools.partial(
                augment_fn, flip=info.flip_augment, **(augment_options or {})
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if batch_size is not None:
        ds = ds.batch(int(batch_size))
    return ds.prefetch(tf.data.AUTOTUNE)
