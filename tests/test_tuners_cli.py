"""`spzoo search` end to end: SIGKILL and resume, chief + two workers, pruning."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from spzoo.cli import main
from spzoo.tuners.growth_inherit import EXACT, PARTIAL

# Each test runs a search that trains networks (subprocesses included).
pytestmark = pytest.mark.slow

GROWTH = [
    "search",
    "growth",
    "--dataset",
    "sklearn_digits",
    "--budget",
    "tiny",
    "--blocks",
    "1",
    "--population",
    "2",
    "--sample",
    "1",
    "--iterations",
    "4",
    "--initial-growth",
    "1",
    "--verbose",
    "0",
]


def spzoo(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "spzoo.cli", *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def completed(project):
    trials = {}
    for path in glob.glob(os.path.join(project, "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        if trial["status"] == "COMPLETED":
            trials[trial["trial_id"]] = (
                trial["hyperparameters"]["values"]["architecture"],
                trial["metrics"]["metrics"]["val_accuracy"],
            )
    return trials


def finish(process, timeout):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"timed out:\n{output.decode()[-3000:]}")
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


def test_growth_search_resumes_after_sigkill(tmp_path, capsys):
    directory = str(tmp_path / "run")
    project = os.path.join(directory, "growth")
    process = spzoo([*GROWTH, "--directory", directory])
    deadline = time.time() + 240
    while time.time() < deadline and not completed(project):
        if process.poll() is not None:
            pytest.fail(process.stdout.read().decode()[-3000:])
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = completed(project)
    assert before, "no trial completed before the kill"

    # The same command resumes it, here in this process (no second start of
    # Python and TensorFlow: `main` is what the `spzoo` script runs).
    capsys.readouterr()
    code = main([*GROWTH, "--directory", directory])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    output = captured.out
    after = completed(project)
    assert len(after) == 4 and sorted(after) == ["0", "1", "2", "3"]
    for trial_id, (architecture, accuracy) in before.items():
        assert after[trial_id] == (architecture, accuracy)  # kept, not re-run
    summary = json.loads(open(os.path.join(project, "search.json")).read())
    assert [h["trial_id"] for h in summary["history"]][: len(before)] == sorted(before)
    assert "architectures evaluated" in output

    # The trial's hyperparameter value alone rebuilds the trained network.
    from spzoo import data
    from spzoo.models import build

    best = summary["best_trial"]
    spec = json.loads(after[best][0])
    model = build(spec, (8, 8, 1), 10)
    model.load_weights(os.path.join(project, f"trial_{best}", "checkpoint.weights.h5"))
    x, y = zip(*data.load("sklearn_digits", "eval", batch_size=512), strict=True)
    predicted = model.predict(x[0], verbose=0).argmax(-1)
    accuracy = float((predicted == y[0].numpy()).mean())
    recorded = next(h for h in summary["history"] if h["trial_id"] == best)
    assert accuracy == pytest.approx(recorded["val_accuracy"], abs=1e-6)

    assert main(["analyze", directory, "--top", "2"]) == 0
    assert os.path.isfile(os.path.join(directory, "analysis", "fig11_op_shares.png"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_share_one_search(tmp_path):
    """Two workers train the chief's trials; with `--inherit-weights` a worker
    asks the chief for the parent's spec and reads its weights file (one
    cluster checks both, a start of three processes costs tens of seconds)."""
    directory = str(tmp_path / "run")
    port = str(free_port())
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    # n_iter = 4: two random networks (one per worker) and two children.
    args = [*GROWTH, "--inherit-weights", "--directory", directory]
    chief = spzoo(args, {**env, "KERASTUNER_TUNER_ID": "chief"})
    time.sleep(2)
    workers = [
        spzoo(args, {**env, "KERASTUNER_TUNER_ID": f"tuner{i}"}) for i in range(2)
    ]
    try:
        outputs = [finish(w, 900) for w in workers]
        chief_output = finish(chief, 120)
    finally:
        for p in [chief, *workers]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert all("worker finished" in out for out in outputs)
    project = os.path.join(directory, "growth")
    assert sorted(completed(project)) == ["0", "1", "2", "3"]
    assert os.path.isfile(os.path.join(project, "search.json"))  # the chief's
    assert os.path.isfile(os.path.join(project, "tuner0.json"))
    assert os.path.isfile(os.path.join(project, "tuner1.json"))
    summary = json.loads(open(os.path.join(project, "search.json")).read())
    children = [h for h in summary["history"] if h["parent"] is not None]
    assert children and len(summary["history"]) == 4
    for h in children:
        assert h["inheritance"]["parent"] == h["parent"]
        assert h["inheritance"]["mode"] in (EXACT, PARTIAL)
    assert "weight inheritance: 2 children" in chief_output


def test_the_chief_serves_until_every_worker_was_stopped(tmp_path, monkeypatch):
    """`serve_oracle` (the chief of every search) ends as KerasTuner's chief
    does: not while a worker holds a trial after another was told STOPPED,
    then once the last worker was told STOPPED."""
    import threading

    import keras_tuner
    from keras_tuner.engine.trial import TrialStatus
    from keras_tuner.src.distribute.oracle_client import OracleClient

    from spzoo.tuners.base import serve_oracle

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_port()))
    space = keras_tuner.HyperParameters()
    space.Choice("x", [1, 2, 3])
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=2,
        hyperparameters=space,
        seed=0,
    )
    oracle._set_project_dir(str(tmp_path), "search")  # as a tuner does
    served = threading.Thread(target=serve_oracle, args=(oracle, 0.05), daemon=True)
    served.start()
    workers = {}
    for name in ("tuner0", "tuner1"):
        monkeypatch.setenv("KERASTUNER_TUNER_ID", name)
        workers[name] = OracleClient(oracle)

    def end(name, trial):
        workers[name].update_trial(trial.trial_id, {"score": 1.0})
        trial.status = TrialStatus.COMPLETED
        workers[name].end_trial(trial)

    first = workers["tuner0"].create_trial("tuner0")
    second = workers["tuner1"].create_trial("tuner1")
    end("tuner0", first)
    assert workers["tuner0"].create_trial("tuner0").status == TrialStatus.STOPPED
    served.join(timeout=1.0)  # 20 looks: tuner1 still trains
    assert served.is_alive()
    end("tuner1", second)
    assert workers["tuner1"].create_trial("tuner1").status == TrialStatus.STOPPED
    served.join(timeout=60)
    assert not served.is_alive()
    assert sorted(oracle.trials) == sorted([first.trial_id, second.trial_id])
    assert all(t.status == TrialStatus.COMPLETED for t in oracle.trials.values())
    assert oracle.ongoing_trials == {} and oracle.tuner_ids == set()


def test_pruning_search_cli(tmp_path, capsys):
    directory = str(tmp_path / "run")
    args = [
        "search",
        "pruning",
        "--dataset",
        "sklearn_digits",
        "--budget",
        "tiny",
        "--blocks",
        "1",
        "--iterations",
        "1",
        "--remove",
        "2",
        "--max-drop",
        "0.9",
        "--verbose",
        "0",
        "--directory",
        directory,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 pruning iterations" in out and "n_iter=1" in out
    summary = json.loads(open(os.path.join(directory, "pruning", "search.json")).read())
    first, last = summary["iterations"]
    assert last["neurons"] == first["neurons"] - 2
    assert last["params"] < first["params"]
    assert os.path.isfile(summary["model_path"])
    assert main(["search", "pruning", *args[2:]]) == 0  # finished: resumes, no work
    assert (
        main(["search", "growth", "--dataset", "nope", "--directory", directory]) == 2
    )
