"""Searches resume after a kill in the middle of writing their state.

KerasTuner wrote `oracle.json` and `trial.json` in place: a kill during the
write left a truncated file and every later run failed on it. Here a
growth, a pruning and a macro search (oracles driven with synthetic
metrics, no training) are killed halfway through writing `oracle.json` and
halfway through a `trial.json` (the temporary file is cut to half its
bytes, then the process dies: a real SIGKILL in a forked child, or an
exception KerasTuner does not catch), resumed, and finished: the trials are
those of a run never interrupted. Files corrupted some other way give an
error naming them.
"""

import hashlib
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from keras_tuner.src.engine import trial as trial_module
from spzoo.tuners.growth_oracle import GrowthOracle
from spzoo.tuners.growth_space import GrowthSpace, spec_ops
from spzoo.tuners.macro_search import MacroSearchOracle, MacroSpace
from spzoo.tuners.pruning import PruningOracle, initial_spec

from spzoo.cli import main
from spzoo.io import CorruptFileError


class Killed(BaseException):
    """An in-process kill: KerasTuner catches `Exception`, not this."""


def _score(values: dict) -> float:
    """A deterministic synthetic accuracy in [0.5, 0.9] from the trial's values."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).digest()
    return 0.5 + 0.4 * digest[0] / 255


def _metrics(kind, values):
    if kind == "growth":
        ops = spec_ops(json.loads(values["architecture"]))
        return {"val_accuracy": _score(values), "params": 1000.0 + 40.0 * ops}
    if kind == "pruning":
        return {
            "val_accuracy": 0.9 - 0.001 * int(values["iteration"]),
            "params": 1.0,
            "removable": 5.0,
        }
    return {"val_accuracy": _score(values), "params": 100.0}


def make_oracle(kind, directory):
    if kind == "growth":
        oracle = GrowthOracle(
            GrowthSpace(filters=4, blocks_per_stack=1),
            population_size=4,
            sample_size=2,
            num_iterations=10,
            max_ops=200,
            initial_growth=2,
            seed=7,
        )
    elif kind == "pruning":
        oracle = PruningOracle(initial_spec(2, 1), num_iterations=6, seed=1)
    else:
        space = MacroSpace(num_layers=3, num_segments=1, filters=4)
        oracle = MacroSearchOracle(space, max_trials=8, seed=5)
    oracle._set_project_dir(str(directory), kind)
    return oracle


def drive(oracle, kind, limit=40):
    """Runs trials until the oracle stops: what a tuner does, with fake metrics."""
    for _ in range(limit):
        trial = oracle.create_trial("tuner0")
        if trial.status != trial_module.TrialStatus.RUNNING:
            return trial.status
        values = trial.hyperparameters.values
        oracle.update_trial(trial.trial_id, _metrics(kind, values))
        trial.status = trial_module.TrialStatus.COMPLETED
        oracle.end_trial(trial)
    raise AssertionError("the search did not stop")


def outcome(oracle) -> dict:
    """Every trial's values, status and accuracy, in the order they ended."""
    return {
        "trials": {
            t: (
                trial.hyperparameters.values,
                trial.status,
                trial.metrics.get_last_value("val_accuracy"),
                trial.score,
            )
            for t, trial in sorted(oracle.trials.items())
        },
        "end_order": list(oracle.end_order),
        "extra": {
            key: getattr(oracle, key)
            for key in ("k", "origins", "chain", "stop_reason")
            if hasattr(oracle, key)
        },
    }


def kill_during(monkeypatch, name, count, sigkill=False):
    """Kills the process halfway through the `count`-th write of a file `name`:
    the temporary file holds half its bytes when the process dies."""
    seen = {"n": 0}
    fsync = os.fsync

    def fake_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(f".{name}") and os.path.basename(path).startswith(".tmp-"):
            seen["n"] += 1
            if seen["n"] == count:
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                if sigkill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise Killed(f"write {count} of {name}")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", fake_fsync)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = {}
    for kind in ("growth", "pruning", "macro"):
        oracle = make_oracle(kind, tmp_path_factory.mktemp(kind))
        assert drive(oracle, kind) == trial_module.TrialStatus.STOPPED
        runs[kind] = outcome(oracle)
    return runs


def check_resumes(kind, directory, reference, leftovers=0):
    project = Path(directory) / kind
    # What the kill left: the real files intact; after a SIGKILL the half
    # temporary file (an exception deletes it).
    assert len(list(project.rglob(".tmp-*"))) == leftovers
    for path in [project / "oracle.json", *project.glob("trial_*/trial.json")]:
        json.loads(path.read_text())
    resumed = make_oracle(kind, directory)
    resumed.reload()
    assert drive(resumed, kind) == trial_module.TrialStatus.STOPPED
    assert outcome(resumed) == reference[kind]


@pytest.mark.parametrize("kind", ["growth", "pruning", "macro"])
@pytest.mark.parametrize("name, count", [("oracle.json", 9), ("trial.json", 7)])
def test_search_resumes_after_a_kill_mid_write(
    tmp_path, monkeypatch, reference, kind, name, count
):
    oracle = make_oracle(kind, tmp_path)
    with monkeypatch.context() as patch:
        kill_during(patch, name, count)
        with pytest.raises(Killed):
            drive(oracle, kind)
    check_resumes(kind, tmp_path, reference)


def _sigkilled_search(directory, kind, name, count):
    """The child process: a search that SIGKILLs itself mid-write."""
    kill_during(pytest.MonkeyPatch(), name, count, sigkill=True)
    drive(make_oracle(kind, directory), kind)
    os._exit(3)  # the search finished: it was not killed


@pytest.mark.parametrize("kind", ["growth", "pruning", "macro"])
@pytest.mark.parametrize("name, count", [("oracle.json", 10), ("trial.json", 11)])
def test_search_resumes_after_sigkill_mid_write(tmp_path, reference, kind, name, count):
    # A forked child (no second TensorFlow import) dies by a real SIGKILL
    # halfway through writing the file; its half temporary file stays.
    child = multiprocessing.get_context("fork").Process(
        target=_sigkilled_search, args=(str(tmp_path), kind, name, count)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    check_resumes(kind, tmp_path, reference, leftovers=1)


def test_a_kill_between_trial_and_oracle_writes_repeats_nothing(
    tmp_path, monkeypatch, reference
):
    # Killed after a new trial's file but before the oracle's state: the
    # trial is dropped and created again under the same id.
    oracle = make_oracle("growth", tmp_path)
    drive_until = {"n": 0}
    original = oracle.save

    def save():
        drive_until["n"] += 1
        if drive_until["n"] == 8:
            raise Killed("before oracle.json")
        original()

    monkeypatch.setattr(oracle, "save", save)
    with pytest.raises(Killed):
        drive(oracle, "growth")
    resumed = make_oracle("growth", tmp_path)
    resumed.reload()
    assert drive(resumed, "growth") == trial_module.TrialStatus.STOPPED
    assert outcome(resumed) == reference["growth"]


def test_corrupt_state_files_are_named(tmp_path):
    oracle = make_oracle("growth", tmp_path)
    for _ in range(3):
        oracle.create_trial(f"t{_}")
    trial_file = tmp_path / "growth" / "trial_01" / "trial.json"
    text = trial_file.read_text()
    trial_file.write_text(text[: len(text) // 2])
    with pytest.raises(CorruptFileError, match=r"trial_01/trial\.json.*not valid JSON"):
        make_oracle("growth", tmp_path).reload()
    trial_file.write_text(text)
    (tmp_path / "growth" / "oracle.json").write_text('{"ongoing_trials": {"t0')
    with pytest.raises(CorruptFileError, match=r"oracle\.json.*Unterminated string"):
        make_oracle("growth", tmp_path).reload()


def test_cli_names_a_corrupt_state_file(tmp_path, capsys):
    project = tmp_path / "growth"
    project.mkdir()
    (project / "tuner0.json").write_text("{}")
    (project / "oracle.json").write_bytes(b'{"ongoing_trials": {"tun')
    argv = ["search", "growth", "--dataset", "sklearn_digits", "--budget", "tiny"]
    assert main([*argv, "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(project / "oracle.json") in err and "--overwrite" in err
    (project / "oracle.json").write_text("{}")
    (project / "tuner0.json").write_bytes(b"\x00\x00")
    assert main([*argv, "--directory", str(tmp_path)]) == 1
    assert "tuner0.json" in capsys.readouterr().err
