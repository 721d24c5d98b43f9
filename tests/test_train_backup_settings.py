"""`spzoo train` resumes only the run its backup belongs to (settings record)."""

import json

import pytest

from spzoo import cli
from spzoo.training import job

SETTINGS = {"dataset": "sklearn_digits", "epochs": 3, "seed": 0, "spec": {"a": [1]}}


def _backup(tmp_path):
    backup = tmp_path / "m.sklearn_digits.backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    return backup


def _record(backup):
    return json.loads((backup.parent / f"{backup.name}.json").read_text())


def test_a_fresh_run_records_its_settings(tmp_path):
    backup = tmp_path / "m.sklearn_digits.backup"
    assert job.check_backup(backup, SETTINGS, restart=False, chief=True) == "fresh"
    assert _record(backup) == {"settings": SETTINGS}


def test_the_same_settings_resume(tmp_path):
    backup = _backup(tmp_path)
    job.check_backup(backup, SETTINGS, restart=False, chief=True)  # legacy: records
    assert job.check_backup(backup, SETTINGS, restart=False, chief=True) == "resume"


def test_other_settings_are_refused_naming_what_changed(tmp_path):
    backup = _backup(tmp_path)
    job.check_backup(backup, SETTINGS, restart=False, chief=True)
    other = {**SETTINGS, "epochs": 4, "seed": 1}
    with pytest.raises(ValueError) as error:
        job.check_backup(backup, other, restart=False, chief=True)
    message = str(error.value)
    assert "epochs=3 (this run: 4), seed=0 (this run: 1)" in message
    assert "dataset" not in message and "--restart" in message
    assert str(backup) in message and "\n" not in message
    assert (backup / "training_metadata.json").is_file()  # nothing discarded


def test_a_backup_without_settings_resumes_as_legacy_and_records_them(tmp_path):
    backup = _backup(tmp_path)
    assert job.check_backup(backup, SETTINGS, restart=False, chief=True) == "legacy"
    assert _record(backup) == {"settings": SETTINGS}
    assert (backup / "training_metadata.json").is_file()


def test_restart_discards_the_backup(tmp_path):
    backup = _backup(tmp_path)
    job.check_backup(backup, SETTINGS, restart=False, chief=True)
    other = {**SETTINGS, "epochs": 4}
    assert job.check_backup(backup, other, restart=True, chief=True) == "fresh"
    assert not backup.exists() and _record(backup) == {"settings": other}


def test_only_the_chief_writes(tmp_path):
    backup = _backup(tmp_path)
    assert job.check_backup(backup, SETTINGS, restart=True, chief=False) == "fresh"
    assert backup.exists()  # the chief deletes it
    assert not (tmp_path / f"{backup.name}.json").exists()
    assert job.check_backup(backup, SETTINGS, restart=False, chief=False) == "legacy"
    assert not (tmp_path / f"{backup.name}.json").exists()


class Killed(BaseException):
    """A kill of the process (not an error `spzoo` reports)."""


@pytest.mark.slow
def test_train_refuses_a_backup_of_other_settings_and_resumes_a_legacy_one(
    tmp_path, monkeypatch, capsys
):
    args = ["train", "cnn_reference", "--dataset", "sklearn_digits", "--epochs", "2"]
    args += ["--steps-per-epoch", "2", "--batch-size", "16", "--no-tensorboard"]
    args += ["--output-dir", str(tmp_path)]
    saved = job.save_model_atomic

    def killed(model, path):
        raise Killed("after fit, before the save")

    monkeypatch.setattr(job, "save_model_atomic", killed)
    with pytest.raises(Killed):
        cli.main([*args, "--seed", "0"])
    monkeypatch.setattr(job, "save_model_atomic", saved)
    backup = tmp_path / "cnn_reference.sklearn_digits.backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    capsys.readouterr()

    # Another seed: refused, exit 2, one line, the backup kept.
    assert cli.main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "seed=0 (this run: 1)" in err and "--restart" in err
    assert backup.is_dir()

    # A backup written before settings were recorded resumes (nothing trained
    # again: both epochs are in it), and its settings are recorded.
    (tmp_path / "cnn_reference.sklearn_digits.backup.json").unlink()
    lines = []
    monkeypatch.setattr(
        job,
        "EpochProgress",
        lambda epochs: job.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: lines.append(epoch)
        ),
    )
    assert cli.main([*args, "--seed", "0"]) == 0
    assert "written before runs recorded their settings" in capsys.readouterr().out
    assert lines == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cnn_reference.sklearn_digits.json",
        "cnn_reference.sklearn_digits.keras",
    ]
