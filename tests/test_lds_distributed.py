"""LDS on a chief and two workers: one owner of the shared add-on weights W.

The merge rule (`spzoo.tuners.lds_checkpoint`) in NumPy; a chief's oracle
restarted from its saved state (running trials go back to their tuners);
then a tiny LDS search served by a chief on 127.0.0.1 to two worker
processes (and one where a worker is SIGKILLed mid-trial and restarted with
its id), and `spzoo search nhn` on a chief and two workers: no trial is
lost or run twice, and the last version of W is version 0 plus the update
of every completed trial, each once.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from spzoo.tuners import location_direction as lds

SHAPE = (8, 8, 1)  # conftest's tiny NHN
K, LOCATION_CYCLES, DIRECTION_CYCLES, STEPS = 10, 1, 1, 1
TOTAL = K * (LOCATION_CYCLES + DIRECTION_CYCLES)
IDS = [f"{i:02d}" for i in range(TOTAL)]
PROJECT = "lds"


def test_merge_adds_each_update_once():
    w0 = {"a": np.ones((2, 3), "float32"), "b": np.zeros(4, "float32")}
    w0["iterations"] = np.int64(0)
    # Two trials start from version 0; one trains `a`, the other `a` and `b`.
    t1 = {"a": w0["a"] + 0.5, "b": w0["b"], "iterations": np.int64(3)}
    t2 = {"a": w0["a"] - 0.25, "b": w0["b"] + 2.0, "iterations": np.int64(3)}
    u1, u2 = lds.update_of(w0, t1), lds.update_of(w0, t2)
    assert sorted(u1) == ["a", "iterations"]  # `b` did not change
    assert sorted(u2) == ["a", "b", "iterations"]
    w1 = lds.merge(w0, u1)
    for name in w0:  # the first commit onto its own start: what it trained
        np.testing.assert_array_equal(w1[name], t1[name])
    w2 = lds.merge(w1, u2)  # stale: started from version 0, lands on 1
    np.testing.assert_allclose(w2["a"], w0["a"] + 0.5 - 0.25)
    np.testing.assert_array_equal(w2["b"], t2["b"])
    assert int(w2["iterations"]) == 6 and w2["a"].dtype == np.float32
    # Commutative: the other order of commits gives the same W.
    w2_other = lds.merge(lds.merge(w0, u2), u1)
    for name in w0:
        np.testing.assert_allclose(w2_other[name], w2[name])
    with pytest.raises(ValueError, match=r"arrays W does not have: \['c'\]"):
        lds.merge(w0, {"c": np.zeros(1)})


def test_versions_commit_and_collect(tmp_path):
    versions = lds.SharedWeightsVersions(str(tmp_path))
    w0 = {"a": np.zeros(3, "float32"), "iterations": np.int64(0)}
    versions.initialize(w0)
    versions.initialize({"a": np.ones(3, "float32"), "iterations": np.int64(9)})
    np.testing.assert_array_equal(versions.read(0)["a"], w0["a"])  # kept
    for trial_id, step in (("0", 1.0), ("1", 2.0)):
        trained = {"a": np.full(3, step, "float32"), "iterations": np.int64(1)}
        versions.write_update(trial_id, w0, trained)  # both start from 0
    assert versions.commit("0", 0) == 1 and versions.commit("1", 1) == 2
    np.testing.assert_array_equal(versions.read(2)["a"], np.full(3, 3.0))
    assert int(versions.read(2)["iterations"]) == 2
    versions.collect({1, 2})
    assert versions.versions() == [1, 2]
    with pytest.raises(FileNotFoundError, match="Version 0 of the shared add-on"):
        versions.read(0)
    with pytest.raises(FileNotFoundError, match="Trial 7 completed without"):
        versions.read_update("7")


def test_a_restarted_chief_gives_running_trials_back_to_their_tuners(
    tmp_path, tiny_nhn
):
    from keras_tuner.engine.trial import TrialStatus

    def make_oracle():
        oracle = lds.LocationDirectionOracle(
            tiny_nhn.spec, population_size=K, location_cycles=1, direction_cycles=1
        )
        oracle._set_project_dir(str(tmp_path), PROJECT)  # as a tuner does
        return oracle

    def end(oracle, trial_id, start, trained):
        versions.write_update(trial_id, start, trained)
        oracle.update_trial(trial_id, {lds.ACCURACY: 0.5})
        trial = oracle.get_trial(trial_id)
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)

    def started(trial) -> int:
        return json.loads(trial.hyperparameters.values[lds.CANDIDATE])[
            "weights_version"
        ]

    oracle = make_oracle()
    versions = lds.SharedWeightsVersions(oracle._project_dir)
    w0 = {"a": np.zeros(2, "float32"), "iterations": np.int64(0)}
    w1 = {"a": np.ones(2, "float32"), "iterations": np.int64(1)}
    versions.initialize(w0)
    t0, t1, t2 = (oracle.create_trial(f"tuner{i}").trial_id for i in range(3))
    end(oracle, t1, w0, w1)
    assert oracle.weights_version == 1 and oracle.merged == {t1: 1}

    # The chief restarts (its state as saved at the last end): the trials
    # that were running go back to the tuners that ran them, not to a queue.
    again = make_oracle()
    again.reload()
    running = {tuner: t.trial_id for tuner, t in again.ongoing_trials.items()}
    assert running == {"tuner0": t0, "tuner2": t2} and again._retry_queue == []
    assert again.create_trial("tuner2").trial_id == t2  # restarted: runs it again
    new = again.create_trial("tuner1")  # done with its trial: a new member
    assert new.trial_id not in (t0, t1, t2) and started(new) == 1
    end(again, t0, w0, {"a": np.full(2, 2.0, "float32"), "iterations": np.int64(1)})
    assert again.merged == {t1: 1, t0: 2}
    # Version 2 = version 1 + tuner0's update (made on version 0).
    np.testing.assert_array_equal(versions.read(2)["a"], [3.0, 3.0])
    assert int(versions.read(2)["iterations"]) == 2
    # Kept: the current version, the one before, and where t2 and `new`
    # start (0 and 1).
    assert versions.versions() == [0, 1, 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(directory, tuner_id, port, argv=None):
    """This file's search (or `argv`) as the process `tuner_id`."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, *(argv or [__file__, str(directory)])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(process, deadline):
    try:
        output, _ = process.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"timed out:\n{output.decode()[-3000:]}")
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


def ran(directory, tuner_id) -> list:
    """The trials a worker process trained to the end (its own log)."""
    path = os.path.join(directory, f"ran_{tuner_id}.txt")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return f.read().split()


def trials(directory) -> dict:
    """`{trial id: trial.json}` of the chief's trial files."""
    out = {}
    for path in glob.glob(os.path.join(directory, PROJECT, "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        out[trial["trial_id"]] = trial
    return out


def check_search(directory):
    """No trial lost or committed twice; W is version 0 plus every update."""
    found = trials(directory)
    assert sorted(found) == IDS
    assert all(t["status"] == "COMPLETED" for t in found.values())
    with open(os.path.join(directory, PROJECT, "oracle.json")) as f:
        state = json.load(f)
    assert state["phase"] == "done" and state["weights_version"] == TOTAL
    merged = state["merged"]  # trial id -> the version its update made
    assert sorted(merged) == IDS
    assert sorted(merged.values()) == list(range(1, TOTAL + 1))
    started = {
        i: json.loads(t["hyperparameters"]["values"][lds.CANDIDATE])["weights_version"]
        for i, t in found.items()
    }
    assert all(0 <= started[i] < merged[i] for i in IDS)
    versions = lds.SharedWeightsVersions(os.path.join(directory, PROJECT))
    last = versions.read(TOTAL)
    expected = {name: np.zeros_like(w) for name, w in last.items()}  # version 0
    for trial_id in sorted(merged, key=merged.get):  # in commit order
        expected = lds.merge(expected, versions.read_update(trial_id))
    for name, w in last.items():
        np.testing.assert_allclose(w, expected[name], atol=1e-6, err_msg=name)
    assert int(last["iterations"]) == TOTAL * STEPS
    return started, merged


@pytest.mark.slow
def test_chief_and_two_workers_share_one_lds_search(tmp_path):
    port = free_port()
    chief = start(tmp_path, "chief", port)
    workers = [start(tmp_path, f"tuner{i}", port) for i in range(2)]
    deadline = time.time() + 600
    try:
        outputs = [finish(w, deadline) for w in workers]
        finish(chief, deadline + 60)  # the chief stops once no worker is left
    finally:
        for p in [chief, *workers]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert all("worker finished" in out for out in outputs)
    by_worker = [ran(tmp_path, f"tuner{i}") for i in range(2)]
    assert all(by_worker), by_worker  # both workers trained members
    assert sorted(by_worker[0] + by_worker[1]) == IDS  # each trial once
    started, merged = check_search(tmp_path)
    stale = sum(started[i] < merged[i] - 1 for i in IDS)
    print(f"{stale} of {TOTAL} updates landed on a newer version than their start")


@pytest.mark.slow
def test_a_killed_worker_restarts_its_trial(tmp_path):
    port = free_port()
    chief = start(tmp_path, "chief", port)
    first = start(tmp_path, "tuner0", port)
    # tuner1 trains alongside, before and after the kill: the trial tuner0
    # was killed in waits for tuner0, whatever tuner1 asks for meanwhile.
    other = start(tmp_path, "tuner1", port)
    processes = [chief, first, other]
    deadline = time.time() + 600
    try:
        # SIGKILL tuner0 while it trains its third trial, then restart it.
        while len(ran(tmp_path, "tuner0")) < 2 and time.time() < deadline:
            assert first.poll() is None, first.stdout.read().decode()[-3000:]
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed_after = ran(tmp_path, "tuner0")
        assert killed_after, "tuner0 finished no trial before the deadline"
        again = start(tmp_path, "tuner0", port)
        processes.append(again)
        outputs = [finish(p, deadline) for p in (again, other)]
        finish(chief, deadline + 60)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert all("worker finished" in out for out in outputs)
    # The log is appended across tuner0's two lives: a trial it was killed
    # in before its end is in it once, from the life that ended it.
    done = ran(tmp_path, "tuner0") + ran(tmp_path, "tuner1")
    assert sorted(done) == IDS
    check_search(tmp_path)


@pytest.mark.slow
def test_nhn_pipeline_on_a_chief_and_two_workers(tmp_path):
    port = free_port()
    argv = ["-m", "spzoo.cli", "search", "nhn", "--dataset", "sklearn_digits"]
    argv += ["--budget", "tiny", "--final-recipe", "base", "--directory", str(tmp_path)]
    chief = start(tmp_path, "chief", port, argv)
    workers = [start(tmp_path, f"tuner{i}", port, argv) for i in range(2)]
    deadline = time.time() + 900
    try:
        outputs = [finish(w, deadline) for w in workers]
        chief_output = finish(chief, deadline + 60)
    finally:
        for p in [chief, *workers]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    # The chief ran every stage and served LDS; the workers trained members.
    assert f"serving the LDS search to its workers at 127.0.0.1:{port}" in chief_output
    assert "| NHN |" in chief_output and "LDS location cycle" not in chief_output
    members = [
        line for out in outputs for line in out.splitlines() if line.startswith("LDS ")
    ]
    assert len(members) == 20  # tiny: K=10, 1 location + 1 direction cycle
    assert all("worker finished" in out for out in outputs)
    root = tmp_path / "nhn"
    lds_stage = json.loads((root / "lds" / "stage.json").read_text())
    assert lds_stage["candidates"] == 20 and lds_stage["shared_weights_version"] == 20
    with open(root / "lds_search" / "oracle.json") as f:
        assert sorted(json.load(f)["merged"].values()) == list(range(1, 21))
    assert (root / "final" / "model.keras").is_file()


if __name__ == "__main__":  # a process of the chief/worker tests
    import keras
    from conftest import TINY_NHN_SPEC, _trained_like

    from spzoo.tuners.base import is_worker

    class LoggingTuner(lds.LDSTuner):
        """Appends each trial it ended to `ran_<tuner id>.txt`."""

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            with open(os.path.join(directory, f"ran_{self.tuner_id}.txt"), "a") as f:
                f.write(f"{trial.trial_id}\n")

    directory = sys.argv[1]
    keras.utils.set_random_seed(0)  # the same base network in every process
    shared = lds.SharedAddOns(
        TINY_NHN_SPEC, _trained_like(TINY_NHN_SPEC), SHAPE, 3, total_steps=TOTAL
    )
    oracle = lds.LocationDirectionOracle(
        TINY_NHN_SPEC,
        population_size=K,
        location_cycles=LOCATION_CYCLES,
        direction_cycles=DIRECTION_CYCLES,
        seed=3,
    )
    rng = np.random.default_rng(0)
    data = (
        rng.random((40, *SHAPE)).astype("float32"),
        rng.integers(0, 3, 40),
        rng.random((20, *SHAPE)).astype("float32"),
        rng.integers(0, 3, 20),
    )
    tuner = LoggingTuner(
        oracle,
        shared,
        data,
        steps=STEPS,
        batch_size=4,
        eval_batch_size=5,
        directory=directory,
        project_name=PROJECT,
    )
    tuner.search(verbose=0)
    print("worker finished" if is_worker() else "chief finished")
