"""Class-name lists of the registry and how loaders map labels to them."""

import os
import pickle

import numpy as np
import pytest

import spzoo.data as data
from spzoo.data import layouts, paper


def test_cifar_names():
    # Checked against mmpretrain 1.2.0, mmpretrain/datasets/categories.py.
    assert data.get("cifar10").class_names == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    names = data.get("cifar100").class_names
    assert len(names) == 100 and len(set(names)) == 100
    assert list(names) == sorted(names)
    assert names[:2] == ("apple", "aquarium_fish") and names[99] == "worm"
    assert names[19] == "cattle" and names[58] == "pickup_truck"


def test_art_names():
    wikiart = data.get("wikiart").class_names
    assert len(wikiart) == 27 and len(set(wikiart)) == 27
    # Ids of ArtGAN's style_class.txt.
    assert wikiart[0] == "Abstract_Expressionism"
    assert wikiart[3] == "Art_Nouveau_Modern"
    assert wikiart[13] == "Mannerism_Late_Renaissance"
    assert wikiart[26] == "Ukiyo_e"
    artists = data.get("best_artworks").class_names
    keys = [layouts.folder_key(a) for a in artists]
    assert len(artists) == 50 and len(set(keys)) == 50
    assert list(artists) == sorted(artists)


def test_animal_mnist_names():
    assert data.get("animal_mnist").class_names == (
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


def _pickle(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _cifar100(root, names):
    folder = os.path.join(root, "cifar-100-python")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        _pickle(
            os.path.join(folder, split),
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": rng.integers(0, 100, n).tolist(),
            },
        )
    if names is not None:
        _pickle(
            os.path.join(folder, "meta"),
            {b"fine_label_names": [n.encode() for n in names]},
        )
    return root


def test_cifar_label_names_from_meta(tmp_path):
    root = str(tmp_path / "c100")
    assert layouts.cifar_label_names(_cifar100(root, None), 100) is None
    _cifar100(root, paper.CIFAR100_CLASSES)
    assert layouts.cifar_label_names(root, 100) == paper.CIFAR100_CLASSES
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    _pickle(str(folder / "batches.meta"), {b"label_names": ["cat", "dog"]})
    assert layouts.cifar_label_names(str(tmp_path / "c10"), 10) == ("cat", "dog")
    assert layouts.cifar_label_names(str(folder), 10) == ("cat", "dog")
    _pickle(str(folder / "batches.meta"), {b"num_vis": 3072})
    with pytest.raises(ValueError, match=r"batches.meta lacks b'label_names'"):
        layouts.cifar_label_names(str(folder), 10)
    with pytest.raises(ValueError, match=r"`classes` must be 10 or 100"):
        layouts.cifar_label_names(str(folder), 20)


def test_cifar_loader_checks_names(tmp_path):
    good = _cifar100(str(tmp_path / "good"), paper.CIFAR100_CLASSES)
    ds = data.load("cifar100", "eval", batch_size=8, shuffle=False, data_dir=good)
    x, _ = next(iter(ds))
    assert x.shape == (2, 32, 32, 3)
    swapped = list(paper.CIFAR100_CLASSES)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    bad = _cifar100(str(tmp_path / "bad"), swapped)
    with pytest.raises(
        ValueError, match=r"names class 5 'bee'; the registry names it 'bed'"
    ):
        data.load("cifar100", data_dir=bad)
    short = _cifar100(str(tmp_path / "short"), paper.CIFAR100_CLASSES[:20])
    with pytest.raises(ValueError, match=r"lists 20 classes; expected 100"):
        data.load("cifar100", data_dir=short)


def test_cifar_keras_cache_found(tmp_path, monkeypatch):
    monkeypatch.setenv("SPZOO_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert paper._keras_cifar_cache(100) is None
    assert "no copy at" in data.get("cifar100").missing()
    # Keras 3 extracts into datasets/cifar-100-python-target/cifar-100-python.
    target = str(tmp_path / "keras" / "datasets" / "cifar-100-python-target")
    _cifar100(target, paper.CIFAR100_CLASSES)
    assert paper._keras_cifar_cache(100) == target
    assert data.get("cifar100").missing() is None


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_art_folders_map_to_registered_labels(tmp_path):
    root = tmp_path / "wikiart"
    for style in ("Ukiyo_e", "Art_Nouveau_Modern", "Abstract_Expressionism"):
        _touch(str(root / style / "a.jpg"))
    paths, labels = layouts.artworks(str(root), "train", paper.WIKIART_CLASSES)
    by_folder = {
        os.path.basename(os.path.dirname(p)): y
        for p, y in zip(paths, labels, strict=True)
    }
    assert by_folder == {
        "Abstract_Expressionism": 0,
        "Art_Nouveau_Modern": 3,
        "Ukiyo_e": 26,
    }
    kaggle = tmp_path / "best" / "images" / "images"
    for artist in ("William_Turner", "Albrecht_Du\u0308rer", "Rene\u0301_Magritte"):
        _touch(str(kaggle / artist / "a.jpg"))
    paths, labels = layouts.artworks(
        str(tmp_path / "best"), "train", paper.BEST_ARTWORKS_CLASSES
    )
    assert sorted(labels) == [0, 43, 49]
    _touch(str(kaggle / "Johannes_Vermeer" / "a.jpg"))
    with pytest.raises(ValueError, match=r"class 'Johannes_Vermeer' is not one"):
        layouts.artworks(str(tmp_path / "best"), "train", paper.BEST_ARTWORKS_CLASSES)
