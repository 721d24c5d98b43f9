"""Loaders of the paper's datasets on tiny fixtures in their standard layouts."""

import csv
import os
import pickle

import numpy as np
import pytest
import soundfile as sf

import spzoo.data as data
from spzoo.data import paper


def _wav(path, seconds, rate, freq=440.0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")
    return path


def _examples(name, split, **options):
    ds = data.load(name, split, batch_size=None, shuffle=False, **options)
    xs, ys = zip(*ds.as_numpy_iterator(), strict=True)
    return np.stack(xs), np.array(ys)


@pytest.fixture
def speech_root(tmp_path):
    root = tmp_path / "speech_commands"
    for word, names in {"yes": ["a", "b", "e"], "no": ["c", "d"]}.items():
        for n in names:
            _wav(str(root / word / f"{n}_nohash_0.wav"), 1.0, 16000)
    _wav(str(root / "_background_noise_" / "noise.wav"), 1.0, 16000)
    (root / "testing_list.txt").write_text("yes/b_nohash_0.wav\nno/d_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("yes/e_nohash_0.wav\n")
    return root


@pytest.mark.slow
def test_speech_commands_layout(speech_root):
    x, y = _examples("speech_commands", "train", data_dir=str(speech_root))
    assert x.shape == (2, 32, 32, 1)
    names = paper.SPEECH_COMMANDS_CLASSES
    assert sorted(y.tolist()) == sorted([names.index("yes"), names.index("no")])
    _, y_eval = _examples("speech_commands", "eval", data_dir=str(speech_root))
    assert len(y_eval) == 2


def test_speech_commands_bad_inputs(speech_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="Speech Commands folder not found"):
        data.load("speech_commands", data_dir=str(tmp_path / "nowhere"))
    (speech_root / "up").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Label folder .*up has no files of"):
        data.load("speech_commands", data_dir=str(speech_root))
    os.rmdir(speech_root / "up")
    _wav(str(speech_root / "no" / "z_nohash_0.wav"), 1.0, 8000)
    with pytest.raises(ValueError, match=r"z_nohash_0.wav has sample rate 8000 Hz"):
        data.load("speech_commands", data_dir=str(speech_root))
    os.remove(speech_root / "no" / "z_nohash_0.wav")
    _wav(str(speech_root / "banana" / "q_nohash_0.wav"), 1.0, 16000)
    with pytest.raises(ValueError, match="class 'banana' is not one of"):
        data.load("speech_commands", data_dir=str(speech_root))


@pytest.mark.slow
def test_speech_commands_env_var(speech_root, monkeypatch):
    monkeypatch.setenv("SPZOO_DATA_DIR", str(speech_root.parent))
    assert data.get("speech_commands").missing() is None
    batch = next(iter(data.load("speech_commands", "eval", batch_size=4)))
    assert batch[0].shape == (2, 32, 32, 1)


@pytest.mark.slow
def test_esc50_layout_folds(tmp_path):
    root = tmp_path / "esc50"
    os.makedirs(root / "meta")
    rows = []
    for fold, target in ((1, 0), (2, 5), (5, 49)):
        name = f"{fold}-x-A-{target}.wav"
        _wav(str(root / "audio" / name), 5.0, 44100, freq=200 + 100 * fold)
        rows.append(
            [name, fold, target, paper.ESC50_CLASSES[target], "False", "x", "A"]
        )
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
        )
        w.writerows(rows)
    x, y = _examples("esc50", "train", data_dir=str(root))
    assert x.shape == (2, 128, 128, 1) and y.tolist() == [0, 5]
    _, y = _examples("esc50", "eval", data_dir=str(root))
    assert y.tolist() == [49]
    os.remove(root / "audio" / rows[0][0])
    with pytest.raises(FileNotFoundError, match="ESC-50 audio file not found.*1-x-A-0"):
        data.load("esc50", data_dir=str(root))


@pytest.mark.slow
def test_urbansound8k_layout_folds(tmp_path):
    root = tmp_path / "us8k"
    os.makedirs(root / "metadata")
    rows = []
    for fold, cid in ((1, 3), (8, 8), (9, 0), (10, 9)):
        name = f"{fold}-{cid}-0-0.wav"
        _wav(str(root / "audio" / f"fold{fold}" / name), 4.0, 8000)
        cls = paper.URBANSOUND8K_CLASSES[cid]
        rows.append([name, "1", "0", "4", "1", fold, cid, cls])
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID"]
            + ["class"]
        )
        w.writerows(rows)
    x, y = _examples("urbansound8k", "train", data_dir=str(root))
    assert x.shape == (2, 64, 64, 1) and y.tolist() == [3, 8]
    _, y = _examples("urbansound8k", "eval", data_dir=str(root))
    assert y.tolist() == [0, 9]


@pytest.mark.slow
def test_gtzan_layout_pieces_and_split(tmp_path):
    root = tmp_path / "gtzan"
    for genre in ("blues", "rock"):
        for i in range(2):
            _wav(
                str(root / "genres_original" / genre / f"{genre}.0000{i}.wav"),
                30.0,
                22050,
            )
    x, y = _examples("gtzan", "train", data_dir=str(root))
    # One file per genre in train, six 5 s pieces each.
    assert x.shape == (12, 128, 128, 1)
    assert sorted(set(y.tolist())) == [0, 9]
    _, y_eval = _examples("gtzan", "eval", data_dir=str(root))
    assert len(y_eval) == 12


def _cifar_batch(path, n, key, seed):
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        key: rng.integers(0, 10, n).tolist(),
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar10_local_copy(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _cifar_batch(folder / f"data_batch_{i}", 4, b"labels", i)
    _cifar_batch(folder / "test_batch", 3, b"labels", 9)
    x, y = _examples("cifar10", "train", data_dir=str(tmp_path / "cifar10"))
    assert x.shape == (20, 32, 32, 3) and y.dtype == np.int32
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    x_eval, _ = _examples("cifar10", "eval", data_dir=str(tmp_path / "cifar10"))
    assert x_eval.shape == (3, 32, 32, 3)


def test_cifar100_local_copy_and_bad_shape(tmp_path):
    folder = tmp_path / "c100" / "cifar-100-python"
    folder.mkdir(parents=True)
    _cifar_batch(folder / "train", 5, b"fine_labels", 0)
    _cifar_batch(folder / "test", 2, b"fine_labels", 1)
    x, _ = _examples("cifar100", "eval", data_dir=str(tmp_path / "c100"))
    assert x.shape == (2, 32, 32, 3)
    bad = tmp_path / "bad" / "cifar-100-python"
    bad.mkdir(parents=True)
    with open(bad / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, f)
    _cifar_batch(bad / "test", 2, b"fine_labels", 1)
    with pytest.raises(ValueError, match=r"CIFAR batch .*train holds images of shape"):
        data.load("cifar100", data_dir=str(tmp_path / "bad"))


def _png(path, height, width, seed):
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_png(image))
    return image


@pytest.mark.slow
def test_artworks_five_crops_normalised_and_split(tmp_path):
    root = tmp_path / "best_artworks" / "images" / "images"
    images = {}
    # Folder names as the Kaggle archive spells them (Durer's umlaut decomposed).
    for folder in ("Albrecht_Du\u0308rer", "Claude_Monet"):
        for i in range(5):
            path = root / folder / f"{folder}_{i}.png"
            images[str(path)] = _png(path, 70 + i, 90, seed=i)
    x, y = _examples("best_artworks", "train", data_dir=str(tmp_path / "best_artworks"))
    # 4 of 5 images per artist in train, five crops each.
    assert x.shape == (40, 64, 64, 3)
    assert sorted(set(y.tolist())) == [0, 7]
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    x_eval, y_eval = _examples(
        "best_artworks", "eval", data_dir=str(tmp_path / "best_artworks")
    )
    assert x_eval.shape == (10, 64, 64, 3)


def test_five_crops_are_corners_and_centre():
    from spzoo.data.visual import five_crops

    image = np.arange(70 * 80 * 1, dtype=np.float32).reshape(70, 80, 1)
    crops = five_crops(image, 64).numpy()
    expected = [
        image[:64, :64],
        image[:64, 16:],
        image[6:, :64],
        image[6:, 16:],
        image[3:67, 8:72],
    ]
    np.testing.assert_array_equal(crops, np.stack(expected))


def test_artworks_bad_inputs(tmp_path):
    import tensorflow as tf

    root = tmp_path / "wikiart"
    _png(root / "Baroque" / "small.png", 40, 90, seed=0)
    _png(root / "Baroque" / "ok.png", 64, 64, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="small.png"):
        for split in ("train", "eval"):
            _examples("wikiart", split, data_dir=str(root))
    _png(root / "Not_A_Style" / "a.png", 64, 64, seed=2)
    with pytest.raises(ValueError, match="class 'Not_A_Style' is not one of"):
        data.load("wikiart", data_dir=str(root))


def _idx(path, array):
    import gzip

    os.makedirs(os.path.dirname(path), exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_emnist_idx_layout_transposed(tmp_path):
    import gzip

    root = tmp_path / "emnist" / "gzip"
    rng = np.random.default_rng(0)
    stored = {}
    for part, n in (("train", 3), ("test", 2)):
        stored[part] = rng.integers(0, 256, (n, 28, 28))
        prefix = str(root / f"emnist-byclass-{part}")
        _idx(f"{prefix}-images-idx3-ubyte.gz", stored[part])
        _idx(f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) + 59)
    x, y = _examples("emnist", "train", data_dir=str(tmp_path / "emnist"))
    assert x.shape == (3, 28, 28, 1) and y.tolist() == [59, 60, 61]
    # EMNIST stores images transposed.
    np.testing.assert_allclose(x[..., 0], stored["train"].transpose(0, 2, 1) / 255.0)
    _, y = _examples("emnist", "eval", data_dir=str(tmp_path / "emnist"))
    assert y.tolist() == [59, 60]
    _idx(str(root / "emnist-byclass-test-labels-idx1-ubyte.gz"), np.array([0, 62]))
    with pytest.raises(ValueError, match="labels < 62"):
        data.load("emnist", "eval", data_dir=str(tmp_path / "emnist"))
    with gzip.open(root / "emnist-byclass-train-images-idx3-ubyte.gz", "wb") as f:
        dims = b"".join(d.to_bytes(4, "big") for d in (3, 28, 28))
        f.write(bytes([0, 0, 8, 3]) + dims + bytes(28 * 28))  # 1 of 3 images
    with pytest.raises(ValueError, match="emnist-byclass-train-images.*truncated"):
        data.load("emnist", "train", data_dir=str(tmp_path / "emnist"))


@pytest.mark.slow
def test_fma_medium_layout(tmp_path):
    root = tmp_path / "fma"
    os.makedirs(root / "fma_metadata")
    rows = [
        ("2", "small", "Hip-Hop"),
        ("5", "medium", "Hip-Hop"),
        ("10", "medium", "Pop"),
    ]
    rows += [("11", "large", "Pop"), ("12", "medium", "")]
    with open(root / "fma_metadata" / "tracks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "album", "set", "set", "track"])
        w.writerow(["", "title", "split", "subset", "genre_top"])
        w.writerow(["track_id", "", "", "", ""])
        for tid, subset, genre in rows:
            w.writerow([tid, "x", "training", subset, genre])
    t = np.arange(30 * 8000) / 8000
    for tid in ("2", "5", "10"):
        path = root / "fma_medium" / f"{int(tid):06d}"[:3] / f"{int(tid):06d}.mp3"
        os.makedirs(path.parent, exist_ok=True)
        sf.write(str(path), 0.2 * np.sin(2 * np.pi * 300 * t), 8000, format="MP3")
    x, y = _examples("fma_medium", "train", data_dir=str(root))
    # Hip-Hop: 1 of 2 tracks in train, Pop: its one track; six 5 s pieces each.
    assert x.shape == (12, 128, 128, 1)
    genres = paper.FMA_GENRES
    assert sorted(set(y.tolist())) == [genres.index("Hip-Hop"), genres.index("Pop")]
    _, y_eval = _examples("fma_medium", "eval", data_dir=str(root))
    assert y_eval.tolist() == [genres.index("Hip-Hop")] * 6
