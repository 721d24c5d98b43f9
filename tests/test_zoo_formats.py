"""The zoo's SavedModel archives and TFLite files, with a tiny model built here.

A module fixture builds an untrained 8x8 model, exports it (SavedModel as a
deterministic zip archive, TFLite with its sidecar) into a folder with its
own manifest, which a local HTTP server (conftest's `serve_folder`) mirrors.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from spzoo import zoo
from spzoo.zoo import manifest as manifest_lib

NAME = "tiny.sklearn_digits"
DATASET = "sklearn_digits"


def _entry(files: dict, accuracy: float, model) -> dict:
    return {
        "name": NAME,
        "family": "test",
        "arch": "tiny",
        "spec": {},
        "dataset": DATASET,
        "eval_split": "eval",
        "accuracy": accuracy,
        "params": model.count_params(),
        "macs": 1,
        "input": {"shape": [8, 8, 1], "dtype": "float32", "preprocessing": "[0,1]"},
        "classes": [str(i) for i in range(10)],
        "recipe": {"command": "built in tests/test_zoo_formats.py"},
        "license": "Apache-2.0",
        "files": files,
    }


def _write_manifest(folder: Path, entry: dict) -> Path:
    document = {"format": manifest_lib.FORMAT, "base_url": None, "models": [entry]}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest_lib.validate(document)))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny zoo: `folder`, `manifest` (path), `model`, `x` (eval images)."""
    from spzoo.export import to_saved_model, to_tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs, name="tiny")
    folder = tmp_path_factory.mktemp("tiny_zoo")
    work = tmp_path_factory.mktemp("tiny_work")
    model.save(folder / f"{NAME}.keras")
    to_saved_model(model, work / "savedmodel")
    archive = zoo.write_archive(work / "savedmodel", folder / f"{NAME}.savedmodel.zip")
    tflite = to_tflite(model, folder / f"{NAME}.tflite")
    x, y = zoo.eval_arrays(DATASET)
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    files = {
        "keras": zoo.file_record(folder / f"{NAME}.keras"),
        "savedmodel": zoo.file_record(archive),
        "tflite": zoo.file_record(
            tflite,
            weights="float32",
            sidecar=zoo.file_record(tflite.with_name(tflite.name + ".json")),
        ),
    }
    manifest = _write_manifest(folder, _entry(files, accuracy, model))
    return types.SimpleNamespace(folder=folder, manifest=manifest, model=model, x=x)


def _fetch(tiny, format, cache, server=None, **kwargs):
    kwargs.setdefault("offline", server is None)
    return zoo.fetch(
        NAME,
        format=format,
        cache_dir=cache,
        base_url=server["url"] if server else None,
        shipped=server is None,
        progress=False,
        manifest=tiny.manifest,
        **kwargs,
    )


def _sha256(tiny, format):
    return zoo.info(NAME, tiny.manifest)["files"][format]["sha256"]


def _logits(tiny, path, format):
    return zoo.predict_file(path, format, tiny.x[:32])


@pytest.mark.slow
def test_savedmodel_archive_is_downloaded_extracted_and_reused(
    tiny, tmp_path, serve_folder
):
    with serve_folder(tiny.folder) as server:
        path = _fetch(tiny, "savedmodel", tmp_path, server)
        assert path == tmp_path / "models" / NAME / f"{NAME}.savedmodel"
        assert (path / "saved_model.pb").is_file()
        np.testing.assert_allclose(
            _logits(tiny, path, "savedmodel"),
            tiny.model.predict(tiny.x[:32], verbose=0),
            atol=1e-5,
        )
        assert len(server["requests"]) == 1
        files = [p.name for p in path.parent.iterdir() if p.suffix != ".lock"]
        assert sorted(files) == sorted([path.name, f"{NAME}.savedmodel.zip"])
        # Offline from the extraction; a missing file or a whole missing
        # folder is extracted again from the cached archive, offline.
        assert _fetch(tiny, "savedmodel", tmp_path, server, offline=True) == path
        (path / "variables" / "variables.index").unlink()
        assert _fetch(tiny, "savedmodel", tmp_path, server, offline=True) == path
        assert (path / "variables" / "variables.index").is_file()
        shutil.rmtree(path)
        assert _fetch(tiny, "savedmodel", tmp_path, server, offline=True) == path
        assert zoo.is_extracted(path, _sha256(tiny, "savedmodel"))
        assert len(server["requests"]) == 1


def test_shipped_archive_is_extracted_into_the_cache_only(tiny, tmp_path):
    before = sorted(os.listdir(tiny.folder))
    path = _fetch(tiny, "savedmodel", tmp_path)  # offline, from the shipped zip
    assert path.parent == tmp_path / "models" / NAME
    assert not (path.parent / f"{NAME}.savedmodel.zip").exists()  # not copied
    assert sorted(os.listdir(tiny.folder)) == before
    # An extraction of another archive (a new manifest) is replaced.
    listing = path / ".spzoo-archive.json"
    listing.write_text(listing.read_text().replace('"archive_sha256": "', '"x": "'))
    assert _fetch(tiny, "savedmodel", tmp_path) == path
    assert zoo.is_extracted(path, _sha256(tiny, "savedmodel"))


def test_tflite_is_fetched_with_its_sidecar(tiny, tmp_path, serve_folder):
    with serve_folder(tiny.folder) as server:
        path = _fetch(tiny, "tflite", tmp_path, server)
        assert path == tmp_path / "models" / NAME / f"{NAME}.tflite"
        assert path.with_name(path.name + ".json").is_file()
        assert sorted(p for p, _ in server["requests"]) == [
            f"/{NAME}.tflite",
            f"/{NAME}.tflite.json",
        ]
        np.testing.assert_allclose(
            _logits(tiny, path, "tflite"),
            tiny.model.predict(tiny.x[:32], verbose=0),
            atol=1e-4,
        )
        assert _fetch(tiny, "tflite", tmp_path, server, offline=True) == path
        path.with_name(path.name + ".json").unlink()  # only the sidecar again
        with pytest.raises(zoo.ZooError, match="offline"):
            _fetch(tiny, "tflite", tmp_path, server, offline=True)
        assert _fetch(tiny, "tflite", tmp_path, server) == path
        assert server["requests"][-1][0] == f"/{NAME}.tflite.json"
        assert len(server["requests"]) == 3


def test_evaluate_gives_the_same_accuracy_in_every_format(tiny, tmp_path):
    accuracies = {
        format: zoo.evaluate(
            NAME, format=format, manifest=tiny.manifest, cache_dir=tmp_path
        )["accuracy"]
        for format in ("keras", "savedmodel", "tflite")
    }
    assert len(set(accuracies.values())) == 1, accuracies
    assert accuracies["keras"] == zoo.info(NAME, tiny.manifest)["accuracy"]


def test_concurrent_savedmodel_fetches_extract_once(tiny, tmp_path, serve_folder):
    code = (
        "import sys; from spzoo import zoo; "
        "print(zoo.fetch(sys.argv[1], 'savedmodel', cache_dir=sys.argv[2], "
        "base_url=sys.argv[3], shipped=False, offline=False, progress=False, "
        "manifest=sys.argv[4]))"
    )
    with serve_folder(tiny.folder) as server:
        server["delay"] = 0.02  # slow enough that the processes overlap
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, NAME, str(tmp_path), server["url"]]
                + [str(tiny.manifest)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(manifest_lib.REPOSITORY)},
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    folder = tmp_path / "models" / NAME
    assert {out.strip() for out, _ in outputs} == {str(folder / f"{NAME}.savedmodel")}
    assert len(server["requests"]) == 1
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # staging


def _zip(path: Path, members: dict, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.create_system, info.external_attr = 3, (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


def _tar(path: Path, members: dict, kind=tarfile.REGTYPE, target="") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, target, len(data)
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


UNSAFE = {
    "zip-dotdot": lambda p: _zip(p / "a.zip", {"ok.txt": "x", "../evil.txt": "x"}),
    "zip-nested-dotdot": lambda p: _zip(p / "a.zip", {"a/../../evil.txt": "x"}),
    "zip-absolute": lambda p: _zip(p / "a.zip", {str(p / "evil.txt"): "x"}),
    "zip-symlink": lambda p: _zip(p / "a.zip", {}, link="evil"),
    "tar-dotdot": lambda p: _tar(p / "a.tar.gz", {"../evil.txt": b"x"}),
    "tar-absolute": lambda p: _tar(p / "a.tar.gz", {str(p / "evil.txt"): b"x"}),
    "tar-symlink": lambda p: _tar(
        p / "a.tar.gz", {"evil": b""}, tarfile.SYMTYPE, "/etc/passwd"
    ),
    "tar-hardlink": lambda p: _tar(
        p / "a.tar.gz", {"evil": b""}, tarfile.LNKTYPE, "../outside"
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_archive_members_are_refused(tmp_path, kind):
    archive = UNSAFE[kind](tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(zoo.ArchiveError, match="refusing to extract"):
        zoo.extract_archive(archive, cache / "out", "0" * 64)
    assert not (tmp_path / "evil.txt").exists()
    assert list(cache.iterdir()) == []  # no target, no staging folder left


def test_fetch_refuses_an_archive_with_a_traversal(tiny, tmp_path, serve_folder):
    folder = tmp_path / "zoo"
    folder.mkdir()
    archive = _zip(folder / f"{NAME}.savedmodel.zip", {"../../evil.txt": "x"})
    entry = json.loads(tiny.manifest.read_text())["models"][0]
    entry["files"] = {"savedmodel": zoo.file_record(archive)}
    manifest = _write_manifest(folder, entry)
    with serve_folder(folder) as server, pytest.raises(zoo.ArchiveError, match="evil"):
        zoo.fetch(
            NAME,
            "savedmodel",
            cache_dir=tmp_path / "home",
            base_url=server["url"],
            shipped=False,
            offline=False,
            progress=False,
            manifest=manifest,
        )
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "home" / "models" / NAME / f"{NAME}.savedmodel").exists()


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_archives_are_deterministic_and_round_trip(tmp_path, suffix):
    source = tmp_path / "source"
    (source / "variables").mkdir(parents=True)
    (source / "assets").mkdir()  # an empty folder is kept
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(os.urandom(1000))
    first = zoo.write_archive(source, tmp_path / f"a{suffix}")
    os.utime(source / "saved_model.pb", (0, 1e9))  # other times, same files
    second = zoo.write_archive(source, tmp_path / f"b{suffix}")
    assert first.read_bytes() == second.read_bytes()
    sha256 = zoo.sha256_file(first)
    out = zoo.extract_archive(first, tmp_path / "out", sha256)
    assert (out / "variables" / "variables.index").read_bytes() == (
        source / "variables" / "variables.index"
    ).read_bytes()
    assert (out / "assets").is_dir()
    assert zoo.is_extracted(out, sha256) and not zoo.is_extracted(out, "0" * 64)


@pytest.mark.slow
def test_wheel_ships_the_manifest_but_no_model_file(tmp_path):
    """A wheel built from the checkout lists the zoo without the checkout; a
    fetch then needs a mirror. (`pip wheel` without build isolation or an
    index: offline.)"""
    root = manifest_lib.REPOSITORY
    if not (root / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip", "-q"]
    build_existed = (root / "build").exists()
    try:
        subprocess.run(
            pip
            + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
    finally:
        if not build_existed:  # setuptools' in-tree build folder
            shutil.rmtree(root / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("spzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "spzoo/saved_models/manifest.json" in names
    shipped = [n for n in names if n.startswith("spzoo/saved_models/")]
    assert shipped == ["spzoo/saved_models/manifest.json"], shipped
    site = tmp_path / "site"
    subprocess.run(
        pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
        env=env,
        check=True,
        capture_output=True,
    )
    code = (
        "import json; from spzoo import zoo\n"
        "names = zoo.list_models()\n"
        "try:\n"
        "    zoo.fetch(names[0], cache_dir='home', progress=False)\n"
        "    error = None\n"
        "except zoo.ZooError as e:\n"
        "    error = str(e)\n"
        "print(json.dumps([str(zoo.default_manifest()), names, error]))\n"
    )
    env = {k: v for k, v in env.items() if not k.startswith("SPZOO_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site)},
        check=True,
        capture_output=True,
        text=True,
    )
    path, names, error = json.loads(result.stdout.strip().splitlines()[-1])
    assert path == str(site / "spzoo" / "saved_models" / "manifest.json")
    assert names == zoo.list_models()
    assert error is not None and "SPZOO_ZOO_URL" in error


def test_manifest_requires_a_sidecar_and_an_archive(tiny):
    entry = json.loads(tiny.manifest.read_text())["models"][0]
    del entry["files"]["tflite"]["sidecar"]
    with pytest.raises(zoo.ManifestError, match="files.tflite.sidecar"):
        zoo.validate_entry(entry)
    entry = json.loads(tiny.manifest.read_text())["models"][0]
    entry["files"]["savedmodel"]["file"] = f"{NAME}.savedmodel"
    with pytest.raises(zoo.ManifestError, match="must be an archive"):
        zoo.validate_entry(entry)
    entry = json.loads(tiny.manifest.read_text())["models"][0]
    entry["files"]["tflite"]["weights"] = "int8"
    with pytest.raises(zoo.ManifestError, match="files.tflite.weights"):
        zoo.validate_entry(entry)


def test_int8_files_are_fetched_and_evaluated_like_the_others(tiny, tmp_path):
    from spzoo.export import to_onnx, to_tflite
    from spzoo.export.quantize import quantize_onnx
    from spzoo.runtime import load

    x = tiny.x[:64]
    folder = tmp_path / "zoo"
    shutil.copytree(tiny.folder, folder)
    float_onnx = to_onnx(tiny.model, tmp_path / "float.onnx")
    onnx8 = quantize_onnx(float_onnx, folder / f"{NAME}.int8.onnx", x)
    tflite8 = to_tflite(tiny.model, folder / f"{NAME}.int8.tflite", int8_examples=x)
    entry = json.loads((folder / "manifest.json").read_text())["models"][0]
    entry["files"]["onnx-int8"] = zoo.file_record(onnx8, accuracy=0.5)
    entry["files"]["tflite-int8"] = zoo.file_record(
        tflite8, sidecar=zoo.file_record(tflite8.with_name(tflite8.name + ".json"))
    )
    manifest = _write_manifest(folder, entry)
    expected = tiny.model.predict(x[:32], verbose=0)
    for format in ("onnx-int8", "tflite-int8"):
        path = zoo.fetch(NAME, format=format, manifest=manifest, offline=True)
        logits = zoo.predict_file(path, format, x[:32])
        assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9
        assert "quantization" in load(path).metadata
    result = zoo.evaluate(NAME, format="onnx-int8", manifest=manifest, limit=64)
    assert 0.0 <= result["accuracy"] <= 1.0
    del entry["files"]["tflite-int8"]["sidecar"]
    with pytest.raises(zoo.ManifestError, match="files.tflite-int8.sidecar"):
        zoo.validate_entry(entry)
