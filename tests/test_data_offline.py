"""Every offline dataset loads without network and trains a model one step."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import spzoo.data as data
from spzoo.data import offline, registry, speech_synth


def _needs(path, package):
    return pytest.mark.skipif(
        not os.path.exists(path), reason=f"Debian package {package} is not installed"
    )


def _needs_synth():
    return pytest.mark.skipif(
        not speech_synth.engines(),
        reason="Debian packages espeak-ng and flite are not installed",
    )


SLOW = pytest.mark.slow  # a second or more to read the data
OFFLINE = [
    pytest.param(
        "fashion_mnist",
        {},
        marks=[_needs(offline.FASHION_MNIST_DIR, "dataset-fashion-mnist"), SLOW],
    ),
    pytest.param("mnist_5k", {}, marks=SLOW),
    pytest.param("animal_mnist", {}),
    pytest.param("sklearn_digits", {}),
    pytest.param(
        "allison_digits",
        {},
        marks=[
            _needs(offline.ALLISON_DIGITS_DIR, "asterisk-core-sounds-en-wav"),
            SLOW,
        ],
    ),
    pytest.param(
        "sonic_pi_samples",
        {},
        marks=[_needs(offline.SONIC_PI_DIR, "sonic-pi-samples"), SLOW],
    ),
    pytest.param(
        "spoken_commands_synth",
        {"variants_per_word": 2},
        marks=[_needs_synth(), SLOW],
    ),
]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPZOO_CACHE_DIR", str(tmp_path / "cache"))


def _one_step(info, batch):
    model = keras.Sequential(
        [
            keras.Input(info.input_shape),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(info.num_classes),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return float(model.train_on_batch(*batch))


@pytest.mark.parametrize("name,options", OFFLINE)
def test_offline_dataset_loads_and_trains_one_step(name, options):
    info = data.get(name)
    assert info.missing() is None
    train = data.load(name, "train", batch_size=8, **options)
    x, y = next(iter(train))
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    assert tuple(x.shape[1:]) == info.input_shape
    assert 0 <= int(tf.reduce_min(y)) and int(tf.reduce_max(y)) < info.num_classes
    assert np.isfinite(x.numpy()).all()
    assert np.isfinite(_one_step(info, (x, y)))
    if info.sizes and not options:
        count = int(data.load(name, "train", batch_size=None).cardinality())
        assert count == info.sizes["train"]


def test_greyscale_images_are_in_unit_range():
    x, _ = offline._sklearn_digits("train")
    assert x.min() == 0.0 and x.max() == 1.0
    x, y = offline._animal_mnist("eval")
    assert x.shape == (2000, 28, 28, 1) and 0.0 <= x.min() and x.max() <= 1.0
    assert len(np.unique(y)) == 10


def test_splits_are_disjoint_and_cover_everything():
    from spzoo.data.visual import split_80_20

    train, eval_ = split_80_20(100, "train"), split_80_20(100, "eval")
    assert len(train) == 80 and len(eval_) == 20
    assert not set(train) & set(eval_)
    with pytest.raises(ValueError, match="split"):
        split_80_20(10, "test")


@pytest.mark.slow
@_needs(offline.ALLISON_DIGITS_DIR, "asterisk-core-sounds-en-wav")
def test_allison_digits_match_synthetic_labels():
    info = data.get("allison_digits")
    assert info.class_names == speech_synth.COMMANDS[:10]
    _, y = next(iter(data.load("allison_digits", "eval", batch_size=None).batch(11)))
    assert sorted(y.numpy().tolist()) == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_load_bad_arguments():
    with pytest.raises(ValueError, match="Unknown `dataset` 'nope'"):
        data.load("nope")
    with pytest.raises(ValueError, match="`split`"):
        data.load("sklearn_digits", split="test")
    with pytest.raises(ValueError, match="`batch_size`"):
        data.load("sklearn_digits", batch_size=0)
    with pytest.raises(ValueError, match="`augment=True` is for image datasets"):
        data.load("allison_digits", augment=True)


def test_wrong_image_shape_is_an_error(monkeypatch):
    bad = registry.DatasetInfo(
        name="bad_shape",
        input_shape=(8, 8, 1),
        class_names=("a", "b"),
        description="",
        source="test",
        loader=lambda split: (np.zeros((4, 9, 8, 1)), np.zeros(4)),
    )
    monkeypatch.setitem(registry._REGISTRY, "bad_shape", bad)
    with pytest.raises(ValueError, match=r"'bad_shape' .* shape \(9, 8, 1\)"):
        data.load("bad_shape")


@pytest.mark.slow
def test_augment_is_deterministic_and_keeps_shape():
    a = next(iter(data.load("sklearn_digits", batch_size=16, augment=True, seed=3)))
    b = next(iter(data.load("sklearn_digits", batch_size=16, augment=True, seed=3)))
    plain = next(iter(data.load("sklearn_digits", batch_size=16, seed=3)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), plain[1].numpy())
    assert a[0].shape == (16, 8, 8, 1)
    assert not np.array_equal(a[0].numpy(), plain[0].numpy())


def test_read_idx_rejects_truncated_file(tmp_path):
    import gzip

    from spzoo.data.visual import read_idx

    path = tmp_path / "x-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(28 * 28))  # one image of the two declared
    with pytest.raises(ValueError, match=r"x-idx3-ubyte.gz is truncated"):
        read_idx(str(path))


def test_augment_flips_only_where_the_dataset_allows_it():
    from spzoo.data.visual import augment

    assert not data.get("mnist_5k").flip_augment
    assert data.get("fashion_mnist").flip_augment
    # An image whose left half is bright: with pad 0 and no cutout, only a
    # flip can move the bright half to the right.
    image = np.zeros((8, 8, 1), "float32")
    image[:, :4] = 1.0
    flipped = set()
    for s in range(16):
        seed = np.array([s, 0], "int64")
        for flip in (True, False):
            out, _ = augment((image, 0), seed, pad=0, cutout=0, flip=flip)
            if float(np.asarray(out)[:, 4:].sum()) > 0:
                flipped.add(flip)
    assert flipped == {True}
