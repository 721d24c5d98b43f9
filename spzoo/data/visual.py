"""The paper's visual preprocessing, plus the NHN recipe's augmentation.

Paper ("Data Preparation"): greyscale images are scaled to [0, 1]; colour
images are normalised by their per-channel mean and variance; datasets with
no predefined split get a random 80/20 train/eval split; artwork images are
cut into five 64x64 crops, each an example; no augmentation by default.
"""

import gzip
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "eval")


def unit_range(x: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Scales greyscale pixel values `[0, max_value]` to float32 `[0, 1]`.

    Args:
        x: Images, any integer or float dtype.
        max_value: The largest possible pixel value (255 for 8-bit, 16 for
            sklearn digits).

    Returns:
        float32 array of `x`'s shape.
    """
    return (np.asarray(x, "float32") / float(max_value)).astype("float32")


def channel_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of NHWC training images.

    Args:
        x_train: `(N, H, W, C)` images.
    """
    x = np.asarray(x_train, "float64")
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    return mean.astype("float32"), np.maximum(std, 1e-8).astype("float32")


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalises NHWC colour images by per-channel `mean` and `std`.

    Args:
        x: `(N, H, W, C)` images.
        mean: `(C,)` means (of the training images).
        std: `(C,)` standard deviations.
    """
    return ((np.asarray(x, "float32") - mean) / std).astype("float32")


def split_80_20(n: int, split: str, seed: int = 0) -> np.ndarray:
    """Indices of `split` in a fixed random 80/20 split of `n` examples.

    Args:
        n: Number of examples.
        split: `"train"` (the first 80% of a seeded permutation) or `"eval"`.
        seed: Seed of the permutation.

    Returns:
        int64 indices into the `n` examples.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; received {split!r}.")
    if n < 2:
        raise ValueError(f"An 80/20 split needs at least 2 examples; got `n`={n}.")
    order = np.random.default_rng(seed).permutation(n)
    cut = min(max(int(round(0.8 * n)), 1), n - 1)
    return np.sort(order[:cut] if split == "train" else order[cut:])


def check_images(x: np.ndarray, shape: tuple, source: str) -> np.ndarray:
    """Raises a clear error unless `x` holds images of `shape`.

    Args:
        x: Array of images, `(N,) + shape`.
        shape: Expected shape of one image.
        source: The file or argument the images came from (for the message).

    Returns:
        `x`, unchanged.
    """
    if tuple(np.shape(x)[1:]) != tuple(shape):
        raise ValueError(
            f"Images from {source} have shape {tuple(np.shape(x)[1:])}; "
            f"expected {tuple(shape)}."
        )
    return x


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (MNIST format), gzip-compressed or not.

    Args:
        path: Path of the `.idx*-ubyte[.gz]` file.

    Returns:
        The array, with the dimensions stored in the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"Cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header.")
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(
            f"IDX file {path} is truncated or padded: header says {dims} "
            f"({expected} bytes), file holds {len(data) - header}."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def five_crops(image, size: int = 64) -> "tf.Tensor":
    """The four corner crops and the centre crop of one HWC image (TF op).

    Args:
        image: An `(H, W, C)` image tensor with `H, W >= size`.
        size: Side of the square crops.

    Returns:
        `(5, size, size, C)` tensor: top-left, top-right, bottom-left,
        bottom-right, centre.
    """
    import tensorflow as tf

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - size) // 2, (w - size) // 2
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    return tf.stack([image[r : r + size, c : c + size] for r, c in corners])


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def crops_dataset(paths: list[str], labels, size: int = 64) -> "tf.data.Dataset":
    """Decoded images cut into five `size` crops each, as a tf.data pipeline.

    Args:
        paths: Image files (JPEG, PNG, BMP, GIF; decoded to RGB).
        labels: One int label per file.
        size: Side of the square crops.

    Returns:
        An unbatched dataset of `(float32 (size, size, 3) in [0, 255], int32
        label)`, five per file, in file order. An image smaller than the crop
        fails with an error naming the file.
    """
    import tensorflow as tf

    if len(paths) != len(labels):
        raise ValueError(
            f"`labels` has {len(labels)} entries for {len(paths)} `paths`."
        )

    def crops(path, label):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
        shape = tf.shape(image)
        check = tf.debugging.Assert(
            tf.reduce_all(shape[:2] >= size),
            [f"Image smaller than the {size}x{size} crops:", path, "shape", shape],
        )
        with tf.control_dependencies([check]):
            out = five_crops(tf.cast(image, tf.float32), size)
        return tf.ensure_shape(out, [5, size, size, 3]), tf.fill([5], label)

    ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, "int32")))
    ds = ds.map(crops, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.apply(tf.data.experimental.assert_cardinality(5 * len(paths)))


def dataset_channel_stats(ds) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over a dataset of `(HWC image, label)` (one pass).

    Args:
        ds: An unbatched `tf.data.Dataset` of `(image, label)`.
    """
    import tensorflow as tf

    def add(acc, example):
        x = tf.cast(example[0], tf.float64)
        return (
            acc[0] + tf.reduce_sum(x, axis=[0, 1]),
            acc[1] + tf.reduce_sum(tf.square(x), axis=[0, 1]),
            acc[2] + tf.cast(tf.shape(x)[0] * tf.shape(x)[1], tf.float64),
        )

    channels = ds.element_spec[0].shape[-1]
    zeros = tf.zeros([channels], tf.float64)
    total, squares, count = ds.reduce((zeros, zeros, tf.constant(0.0, tf.float64)), add)
    mean = (total / count).numpy()
    std = np.sqrt(np.maximum((squares / count).numpy() - mean**2, 0.0))
    return mean.astype("float32"), np.maximum(std, 1e-8).astype("float32")


def augment(example, seed, pad: int = 4, cutout: int = 8, flip: bool = True) -> tuple:
    """Pad-and-crop, horizontal flip and cutout of one `(image, label)`.

    The NHN recipe's augmentation; off by default (the paper's NAS uses
    none). Stateless: the same `seed` pair gives the same result.

    Args:
        example: `(image, label)` with an `(H, W, C)` float image.
        seed: int64 tensor of shape `(2,)`.
        pad: Zero padding on each side before the random crop.
        cutout: Side of the zeroed square (0 disables cutout).
        flip: Whether to flip left-right at random (off for digits and
            characters, whose mirror image is another symbol or none).

    Returns:
        The augmented `(image, label)`.
    """
    import tensorflow as tf

    image, label = example
    shape = tf.shape(image)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed=seeds[0])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    if cutout > 0:
        h, w = shape[0], shape[1]
        cy = tf.random.stateless_uniform([], seeds[2], 0, h, dtype=tf.int32)
        cx = tf.random.stateless_uniform([], seeds[3], 0, w, dtype=tf.int32)
        r, c = tf.range(h) - cy + cutout // 2, tf.range(w) - cx + cutout // 2
        rows = (r >= 0) & (r < cutout)
        cols = (c >= 0) & (c < cutout)
        keep = tf.logical_not(rows[:, None] & cols[None, :])
        image = image * tf.cast(keep, image.dtype)[:, :, None]
    return image, label
