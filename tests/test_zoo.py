"""The zoo: downloads from a local HTTP server serving saved_models/.

The server (127.0.0.1, a port chosen by the OS) supports Range requests and
can be told to cut a response short, ignore ranges, corrupt the bytes or
answer slowly; it counts the requests it gets.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spzoo import zoo
from spzoo.zoo import manifest as manifest_lib

SAVED = manifest_lib.DEFAULT_MANIFEST.parent
pytestmark = pytest.mark.skipif(
    not manifest_lib.DEFAULT_MANIFEST.exists(), reason="no saved_models/manifest.json"
)


@pytest.fixture
def server(serve_folder):
    """saved_models/ on a local server (conftest's `serve_folder`)."""
    with serve_folder(SAVED) as state:
        yield state


@pytest.fixture
def model():
    """The smallest Keras file of the zoo: (name, file record)."""
    entries = zoo.read()["models"]
    entry = min(entries, key=lambda e: e["files"]["keras"]["size"])
    return entry["name"], entry["files"]["keras"]


def _fetch(name, tmp_path, server, **kwargs):
    kwargs.setdefault("offline", False)
    return zoo.fetch(
        name,
        cache_dir=tmp_path,
        base_url=server["url"],
        shipped=False,
        progress=False,
        **kwargs,
    )


def _leftovers(path: Path) -> list:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_download_verifies_and_offline_uses_cache(tmp_path, server, model):
    name, record = model
    path = _fetch(name, tmp_path, server)
    assert path == tmp_path / "models" / name / record["file"]
    assert zoo.sha256_file(path) == record["sha256"]
    assert [p for p in _leftovers(path) if not p.endswith(".lock")] == []
    count = len(server["requests"])
    # Offline (argument and environment) and online: served from the cache.
    assert _fetch(name, tmp_path, server, offline=True) == path
    assert _fetch(name, tmp_path, server) == path
    assert len(server["requests"]) == count


def test_offline_env_without_cache_is_a_clear_error(
    tmp_path, server, model, monkeypatch
):
    monkeypatch.setenv("SPZOO_OFFLINE", "1")
    with pytest.raises(zoo.ZooError, match="offline"):
        _fetch(model[0], tmp_path, server, offline=None)
    assert server["requests"] == []


def test_corrupted_download_is_rejected_and_removed(tmp_path, server, model):
    name, record = model
    server["corrupt"] = True
    with pytest.raises(zoo.ChecksumError) as error:
        _fetch(name, tmp_path, server)
    assert record["sha256"] in str(error.value)
    folder = tmp_path / "models" / name
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []


def test_corrupted_cache_file_is_removed_then_downloaded(tmp_path, server, model):
    name, record = model
    target = tmp_path / "models" / name / record["file"]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a model")
    with pytest.raises(zoo.ChecksumError, match="expected sha256"):
        _fetch(name, tmp_path, server, offline=True)
    assert not target.exists()
    target.write_bytes(b"not a model")
    assert zoo.sha256_file(_fetch(name, tmp_path, server)) == record["sha256"]


@pytest.mark.parametrize("ranges", [True, False])
def test_interrupted_download_resumes_or_restarts(tmp_path, server, model, ranges):
    name, record = model
    server["truncate"], server["ranges"] = 1, ranges
    path = _fetch(name, tmp_path, server)
    assert zoo.sha256_file(path) == record["sha256"]
    assert len(server["requests"]) == 2
    resumed = server["requests"][1][1]
    assert resumed is not None and resumed.startswith("bytes=")  # asked to resume
    assert not path.with_name(path.name + ".part").exists()


def test_truncated_download_keeps_part_for_a_later_resume(tmp_path, server, model):
    name, record = model
    server["truncate"] = 10  # every try is cut short
    with pytest.raises(zoo.DownloadError, match="Incomplete download"):
        _fetch(name, tmp_path, server)
    target = tmp_path / "models" / name / record["file"]
    assert not target.exists()
    part = target.with_name(target.name + ".part")
    assert 0 < part.stat().st_size < record["size"]
    have = part.stat().st_size
    server["truncate"] = 0
    assert zoo.sha256_file(_fetch(name, tmp_path, server)) == record["sha256"]
    assert server["requests"][-1][1] == f"bytes={have}-"


def test_eight_concurrent_fetches_leave_one_good_file(tmp_path, server, model):
    name, record = model
    server["delay"] = 0.01  # slow enough that the processes overlap
    code = (
        "import sys; from spzoo import zoo; "
        "print(zoo.fetch(sys.argv[1], cache_dir=sys.argv[2], base_url=sys.argv[3], "
        "shipped=False, offline=False, progress=False))"
    )
    env = {**os.environ, "PYTHONPATH": str(manifest_lib.REPOSITORY)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, name, str(tmp_path), server["url"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outputs
    paths = {out.strip() for out, _ in outputs}
    target = tmp_path / "models" / name / record["file"]
    assert paths == {str(target)}
    assert zoo.sha256_file(target) == record["sha256"]
    assert len(server["requests"]) == 1  # downloaded once, under the lock
    assert [p for p in _leftovers(target) if not p.endswith(".lock")] == []


def test_unreachable_server_with_nothing_cached(tmp_path, model):
    with pytest.raises(zoo.DownloadError, match="Cannot reach"):
        zoo.fetch(
            model[0],
            cache_dir=tmp_path,
            base_url="http://127.0.0.1:9",  # discard port: nothing listens
            shipped=False,
            offline=False,
            progress=False,
        )
    assert not any(
        p.is_file() and not p.name.endswith(".lock") for p in tmp_path.rglob("*")
    )


def test_unwritable_cache_is_a_clear_error(tmp_path, server, model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache should be")
    with pytest.raises(zoo.ZooError, match="SPZOO_HOME"):
        _fetch(model[0], blocker, server)


def test_shipped_file_is_used_offline(model):
    name, record = model
    path = zoo.fetch(name, offline=True)
    assert path == SAVED / record["file"]


def test_unknown_name_suggests_close_names(model):
    name = model[0]
    with pytest.raises(zoo.ZooError, match=f"Did you mean '{name}'"):
        zoo.info(name[:-1])
    missing = [f for f in zoo.FORMATS if f not in zoo.info(name)["files"]]
    if missing:
        with pytest.raises(zoo.ZooError, match=f"no '{missing[0]}' file"):
            zoo.fetch(name, format=missing[0])


def test_manifest_missing_field_is_named(tmp_path):
    document = json.loads(manifest_lib.DEFAULT_MANIFEST.read_text())
    del document["models"][0]["files"]["keras"]["sha256"]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    with pytest.raises(zoo.ManifestError, match="files.keras.sha256"):
        zoo.read(path)
    document = json.loads(manifest_lib.DEFAULT_MANIFEST.read_text())
    del document["models"][0]["accuracy"]
    path.write_text(json.dumps(document))
    with pytest.raises(zoo.ManifestError, match="missing field 'accuracy'"):
        zoo.list_models(manifest=path)


def test_list_filters_and_info():
    names = zoo.list_models()
    assert names == sorted(e["name"] for e in zoo.read()["models"])
    assert zoo.list_models("gated*") == [n for n in names if n.startswith("gated")]
    for name in names:
        entry = zoo.info(name, base_url="http://mirror.example/zoo")
        assert zoo.list_models(dataset=entry["dataset"]).count(name) == 1
        for record in entry["files"].values():
            assert record["url"] == f"http://mirror.example/zoo/{record['file']}"


def test_cli_list_info_fetch(capsys, model):
    from spzoo.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for entry in zoo.read()["models"]:
        line = next(line for line in out.splitlines() if line.startswith(entry["name"]))
        assert f"{100 * entry['accuracy']:.2f}%" in line
        assert f"{entry['params']:,}" in line and f"{entry['macs']:,}" in line
    name, record = model
    assert main(["zoo", "info", name]) == 0
    assert record["sha256"] in capsys.readouterr().out
    assert main(["zoo", "fetch", name, "--offline"]) == 0
    assert capsys.readouterr().out.strip() == str(SAVED / record["file"])
    assert main(["zoo", "info", name + "x"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_infer_accepts_a_zoo_name(tmp_path, capsys):
    import numpy as np

    from spzoo.cli import main

    gated = [e for e in zoo.read()["models"] if e.get("threshold")]
    if not gated or "onnx" not in gated[0]["files"]:
        pytest.skip("no gated ONNX model in the zoo")
    entry = gated[0]
    x, y = zoo.eval_arrays(entry["dataset"])
    np.save(tmp_path / "batch.npy", x[:4])
    assert main(["infer", entry["name"], str(tmp_path / "batch.npy")]) == 0
    out = capsys.readouterr().out
    assert entry["files"]["onnx"]["file"] in out
    assert out.count("batch.npy[") == 4


def test_infer_scores_a_zoo_model_on_its_dataset(capsys):
    from spzoo.cli import main

    gated = [e for e in zoo.read()["models"] if (e.get("threshold") or {}).get("curve")]
    if not gated or "onnx" not in gated[0]["files"]:
        pytest.skip("no gated ONNX model in the zoo")
    entry = gated[0]
    argv = ["infer", entry["name"], "--dataset", entry["dataset"], "--limit", "50"]
    assert (
        main([*argv, "--threshold", "none", "--threshold", "5", "--repeats", "2"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert "expected MACs (zoo curve)" in lines[2]
    curve = {r["threshold"]: r["macs"] for r in entry["threshold"]["curve"]}
    assert lines[3].split()[-1] == f"{curve[None]:,.0f}"
    assert lines[4].split()[-1] == f"{curve[5.0]:,.0f}"


def test_curve_macs_takes_a_threshold_as_the_card_prints_it():
    from spzoo.export.cli import curve_macs
    from spzoo.zoo.text import threshold_text

    curve = {None: 100.0, 4.700313568115234: 50.0, 5.136343002319336: 40.0}
    assert curve_macs(curve, None) == 100.0
    assert curve_macs(curve, 5.136343002319336) == 40.0
    assert threshold_text(5.136343002319336) == "5.136343"
    assert curve_macs(curve, float("5.136343")) == 40.0  # as the card prints it
    assert curve_macs(curve, float(threshold_text(4.700313568115234))) == 50.0
    # Six significant digits are another threshold: the level below runs.
    assert curve_macs(curve, 5.13634) is None
    assert curve_macs(curve, 5.0) is None
    assert curve_macs({1.0: 10.0}, None) is None
    assert threshold_text(4.0) == "4" and threshold_text(None) == "none (-inf)"


def test_computed_macs_follows_the_level_in_force():
    from spzoo.export.cli import computed_macs

    metadata = {
        "onnx": {
            "levels": [
                {"threshold": None, "macs": 100.0},
                {"threshold": 1.5, "macs": 60.0},
                {"threshold": 3.0, "macs": 20.0},
            ]
        },
        "threshold": {"default": None, "range": [-2.0, 4.0]},
    }
    assert computed_macs(metadata, None) == 100.0
    assert computed_macs(metadata, -10.0) == 100.0
    assert computed_macs(metadata, 1.4999) == 100.0  # below a level: the one before
    assert computed_macs(metadata, 1.5) == 60.0
    assert computed_macs(metadata, 2.9) == 60.0
    assert computed_macs(metadata, 100.0) == 20.0  # clamped to the range
    metadata["threshold"]["default"] = 2.0
    assert computed_macs(metadata, None) == 60.0  # the file's default


def test_infer_prints_the_work_a_leveled_onnx_file_does(capsys):
    """A builder ONNX file with threshold levels: `infer --dataset` prints the
    MACs of the level in force at each threshold (from the file's metadata)."""
    from spzoo.cli import main
    from spzoo.runtime import load

    name = "gated_sp_resnet.fashion_mnist"
    if name not in {e["name"] for e in zoo.read()["models"]}:
        pytest.skip(f"{name} is not in the zoo")
    levels = load(zoo.fetch(name, "onnx")).metadata["onnx"]["levels"]
    cut = levels[len(levels) // 2]["threshold"]
    argv = ["infer", name, "--dataset", "fashion_mnist", "--limit", "4"]
    argv += ["--threshold", "none", "--threshold", str(cut), "--repeats", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "MACs computed" in lines[2] and "expected MACs (zoo curve)" in lines[2]
    assert lines[3].split()[-2] == f"{levels[0]['macs']:,.0f}"
    assert lines[4].split()[-2] == f"{levels[len(levels) // 2]['macs']:,.0f}"
