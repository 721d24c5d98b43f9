"""`spzoo.io`, the one atomic-write helper, and a training kill before the save."""

import json
import os
import time
from pathlib import Path

import keras
import pytest

from spzoo import io
from spzoo.training import atomic_write_text, job, train


class Killed(BaseException):
    """An in-process kill (not an `Exception`: nothing catches it)."""


def _umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return 0o022


def test_atomic_writes_replace_whole_files_with_usual_modes(tmp_path):
    assert atomic_write_text is io.atomic_write_text  # the old name re-exported
    path = tmp_path / "sub" / "state.json"
    io.atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    io.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["state.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with io.atomic_path(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".model.keras")
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.keras"]
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with io.atomic_path(path):
            pass
    assert path.read_bytes() == b"old"


def test_folders_are_replaced_by_rename(tmp_path):
    target = tmp_path / "m.savedmodel"
    target.mkdir()
    (target / "old.pb").write_bytes(b"old")
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_bytes(b"new")
    assert sorted(os.listdir(target)) == ["saved_model.pb"]
    assert os.listdir(tmp_path) == ["m.savedmodel"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    stale = tmp_path / f".tmp-{dead}-0a1b2c3d.oracle.json"
    stale.write_text('{"trunc')
    folder = tmp_path / f".tmp-{dead}-0a1b2c3e.m.savedmodel"
    folder.mkdir()
    fresh = tmp_path / f".tmp-{dead}-0a1b2c3f.trial.json"
    fresh.write_text("{")
    mine = tmp_path / f".tmp-{os.getpid()}-0a1b2c40.x.json"
    mine.write_text("{")
    old = time.time() - 2 * io.STALE_SECONDS
    for path in (stale, folder, mine):
        os.utime(path, (old, old))
    io.atomic_write_text(tmp_path / "oracle.json", "{}")
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["oracle.json", fresh.name, mine.name])


def test_corrupt_json_is_named(tmp_path):
    path = tmp_path / "trial.json"
    path.write_text('{"trial_id": "0')
    with pytest.raises(io.CorruptFileError, match=r"trial\.json' is not valid JSON"):
        io.read_json(path, "search state file")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(io.CorruptFileError, match="not UTF-8"):
        io.read_json(path)


def test_a_kill_between_fit_and_save_keeps_the_epochs(tmp_path, monkeypatch):
    kwargs = dict(epochs=2, steps_per_epoch=2, output_dir=tmp_path, verbose=0)
    saved = job.save_model_atomic

    def killed(model, path):
        raise Killed("after fit, before the save")

    monkeypatch.setattr(job, "save_model_atomic", killed)
    with pytest.raises(Killed):
        train("cnn_reference", "sklearn_digits", **kwargs)
    backup = tmp_path / "cnn_reference.sklearn_digits.backup"
    state = json.loads((backup / "training_metadata.json").read_text())
    assert state["epoch"] == 2  # both epochs kept
    monkeypatch.setattr(job, "save_model_atomic", saved)
    lines = []
    monkeypatch.setattr(
        job,
        "EpochProgress",
        lambda epochs: keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: lines.append(epoch)
        ),
    )
    result = train("cnn_reference", "sklearn_digits", **kwargs)
    assert lines == []  # nothing trained again: restored at the end
    assert Path(result["model_path"]).is_file() and not backup.exists()
