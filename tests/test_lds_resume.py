"""LDS resumes in the middle of a cycle after a kill, shared add-on weights too.

A search is killed at trial `KILL_AT` of the second location cycle (a real
SIGKILL in a subprocess, and in-process kills at each point between the
search's writes), then resumed by a fresh supernet, oracle and tuner on the
same directory. It must run only the trials that had not finished, start
from the checkpointed shared weights W, and end as the uninterrupted search.
"""

import glob
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import TINY_NHN_SPEC as SPEC
from conftest import _trained_like

from spzoo.tuners import location_direction as lds

# Every test runs (or resumes) an LDS search of 30 trained candidates.
pytestmark = pytest.mark.slow

SHAPE = (8, 8, 1)  # of conftest's tiny NHN
K, LOCATION_CYCLES, DIRECTION_CYCLES, STEPS = 10, 2, 1, 1
TOTAL = K * (LOCATION_CYCLES + DIRECTION_CYCLES)
IDS = [f"{i:02d}" for i in range(TOTAL)]  # KerasTuner pads ids to len("30")
KILL_AT = 13  # trial id 13: the fourth member of the second location cycle
PROJECT = "lds"


class Killed(BaseException):
    """An in-process kill: KerasTuner catches `Exception`, not this."""


def make_data():
    rng = np.random.default_rng(0)
    return (
        rng.random((40, *SHAPE)).astype("float32"),
        rng.integers(0, 3, 40),
        rng.random((20, *SHAPE)).astype("float32"),
        rng.integers(0, 3, 20),
    )


def addon_kernels(shared) -> dict:
    return {name: w.numpy().copy() for name, w in shared.weights().items()}


class RecordingTuner(lds.LDSTuner):
    """Records the trials it runs and W after each; dies at `kill`.

    `kill=(point, trial_id)` with `point` one of
    `"created"` (the trial's file written, not yet the oracle's state),
    `"trained"` (W trained, its update not yet written), `"reported"` (the
    update written and the accuracy to the trial's file, the trial not
    ended), `"ended"` (the oracle recorded the end and committed the next
    version of W).
    `sigkill=True` dies by SIGKILL, else by raising `Killed`.
    """

    def __init__(self, oracle, shared, *args, kill=None, sigkill=False, **kwargs):
        self.ran, self.snapshots = [], {}
        self.kill, self.sigkill = kill, sigkill
        self._wrap(oracle, "_save_trial", "created", before=False)
        self._wrap(oracle, "end_trial", "ended", before=False)
        super().__init__(oracle, shared, *args, **kwargs)
        self._wrap(self.versions, "write_update", "trained", before=True)

    def _die(self, point, trial_id):
        if self.kill == (point, trial_id):
            if self.sigkill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Killed(f"{point} {trial_id}")

    def _wrap(self, obj, method, point, before):
        original = getattr(obj, method)

        def wrapped(arg, *args, **kwargs):
            # `write_update(trial_id, ...)`, else `method(trial)`.
            trial_id = arg if point == "trained" else getattr(arg, "trial_id", None)
            if before:
                self._die(point, trial_id)
            result = original(arg, *args, **kwargs)
            if not before:
                self._die(point, trial_id)
            return result

        setattr(obj, method, wrapped)

    def run_trial(self, trial, *args, **kwargs):
        self.ran.append(trial.trial_id)
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_end(self, trial):
        self._die("reported", trial.trial_id)
        super().on_trial_end(trial)
        self.snapshots[trial.trial_id] = addon_kernels(self.shared)


def make_search(directory, population_size=K, steps=STEPS, **kwargs):
    keras.utils.set_random_seed(0)  # the same base network in every process
    shared = lds.SharedAddOns(SPEC, _trained_like(SPEC), SHAPE, 3, total_steps=40)
    oracle = lds.LocationDirectionOracle(
        SPEC,
        population_size=population_size,
        location_cycles=LOCATION_CYCLES,
        direction_cycles=DIRECTION_CYCLES,
        seed=3,
    )
    tuner = RecordingTuner(
        oracle,
        shared,
        make_data(),
        steps=steps,
        batch_size=4,
        eval_batch_size=5,
        directory=str(directory),
        project_name=PROJECT,
        **kwargs,
    )
    return shared, oracle, tuner


def completed(directory) -> dict:
    """`{trial id: accuracy}` of the trials whose file says COMPLETED."""
    out = {}
    for path in glob.glob(os.path.join(directory, PROJECT, "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        if trial["status"] == "COMPLETED":
            metrics = trial["metrics"]["metrics"][lds.ACCURACY]["observations"]
            out[trial["trial_id"]] = metrics[-1]["value"]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same search without a kill."""
    directory = tmp_path_factory.mktemp("reference")
    shared, oracle, tuner = make_search(directory)
    tuner.search(verbose=0)
    assert tuner.ran == IDS and oracle.phase == "done"
    return {
        "directory": directory,
        "snapshots": tuner.snapshots,
        "accuracy": completed(directory),
        "log": oracle.log,
        "best_location": oracle.best_location,
        "best_direction": oracle.best_direction,
        "iterations": int(shared.model.optimizer.iterations.numpy()),
    }


def check_resume(directory, finished: int, reference):
    """Resumes a killed search; `finished` trials had ended before the kill."""
    before = completed(directory)
    assert sorted(before) == IDS[:finished]
    shared, oracle, tuner = make_search(directory)
    # W comes back from the checkpoint: the reference's W after the last
    # finished trial (with its optimizer step), not the initial zeros.
    assert tuner.resumed
    resumed = addon_kernels(shared)
    assert any(np.abs(w).sum() > 0 for w in resumed.values())
    for name, w in reference["snapshots"][IDS[finished - 1]].items():
        np.testing.assert_allclose(resumed[name], w, atol=1e-6, err_msg=name)
    assert int(shared.model.optimizer.iterations.numpy()) == finished * STEPS
    # The population's cycle and phase come back (mid-cycle: some ended).
    cycle = finished // K
    if cycle < LOCATION_CYCLES:
        assert (oracle.phase, oracle.cycle) == ("location", cycle)
    else:
        assert (oracle.phase, oracle.cycle) == ("direction", cycle - LOCATION_CYCLES)
    assert sum(m["trial"] in before for m in oracle.members) == finished % K

    tuner.search(verbose=0)
    # Only the unfinished trials ran, each once (the interrupted one again).
    assert tuner.ran == IDS[finished:]
    after = completed(directory)
    assert sorted(after) == IDS and len(oracle.trials) == TOTAL
    for trial_id, accuracy in before.items():
        assert after[trial_id] == accuracy
    assert oracle.phase == "done"
    assert [c["phase"] for c in oracle.log] == ["location"] * LOCATION_CYCLES + [
        "direction"
    ] * DIRECTION_CYCLES
    # The resumed search is the uninterrupted one.
    for trial_id in IDS:
        assert after[trial_id] == pytest.approx(
            reference["accuracy"][trial_id], abs=1e-6
        )
    assert oracle.best_location == reference["best_location"]
    assert oracle.best_direction == reference["best_direction"]
    assert int(shared.model.optimizer.iterations.numpy()) == reference["iterations"]
    for name, w in reference["snapshots"][IDS[-1]].items():
        np.testing.assert_allclose(addon_kernels(shared)[name], w, atol=1e-5)
    # Every completed trial's update was committed once: version TOTAL; the
    # versions no trial can start from any more are gone.
    assert oracle.weights_version == TOTAL
    assert sorted(oracle.merged) == IDS
    assert sorted(oracle.merged.values()) == list(range(1, TOTAL + 1))
    versions = lds.SharedWeightsVersions(os.path.join(directory, PROJECT))
    assert sorted(os.listdir(versions.folder)) == [  # no temporary left either
        os.path.basename(versions.path(v)) for v in (TOTAL - 1, TOTAL)
    ]


def test_lds_resumes_after_sigkill_mid_cycle(tmp_path, reference):
    # A real SIGKILL while trial 13 has reported its accuracy but not ended.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, __file__, str(tmp_path), "reported", IDS[KILL_AT]],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-3000:]
    assert os.path.isfile(tmp_path / PROJECT / "trial_13" / "shared_addons_update.npz")
    check_resume(tmp_path, KILL_AT, reference)


@pytest.mark.parametrize(
    "point, trial, finished",
    [
        ("created", KILL_AT, KILL_AT),
        ("trained", KILL_AT, KILL_AT),
        ("ended", 2 * K - 1, 2 * K),  # the last location trial: evolved
    ],
)
def test_lds_resumes_after_a_kill_between_writes(
    tmp_path, reference, point, trial, finished
):
    _, _, tuner = make_search(tmp_path, kill=(point, IDS[trial]))
    with pytest.raises(Killed):
        tuner.search(verbose=0)
    check_resume(tmp_path, finished, reference)


def test_lds_resume_with_other_settings_is_an_error(reference):
    with pytest.raises(ValueError, match="population_size=10 \\(this run: 11\\)"):
        make_search(reference["directory"], population_size=11)
    with pytest.raises(ValueError, match="steps=1 \\(this run: 2\\)"):
        make_search(reference["directory"], steps=2)
    _, oracle, _ = make_search(reference["directory"])  # same settings: resumes
    assert oracle.phase == "done" and len(oracle.trials) == TOTAL


if __name__ == "__main__":  # the subprocess of the SIGKILL test
    directory, point, trial_id = sys.argv[1:]
    _, _, tuner = make_search(directory, kill=(point, trial_id), sigkill=True)
    tuner.search(verbose=0)
    sys.exit("the search finished: it was not killed")
