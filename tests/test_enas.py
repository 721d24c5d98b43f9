"""ENAS macro search: the controller, REINFORCE, the oracle's state, the CLI."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spzoo.nhn.macro_space import MacroSpace
from spzoo.nhn.spec import OPS
from spzoo.nhn.spec import check as check_spec

# 9 layers in 3 segments: layer 2 of each segment has one skip source.
SPACE = MacroSpace(num_layers=9, num_segments=3, filters=4)


def controller(**kwargs):
    from spzoo.tuners.enas_controller import EnasController

    return EnasController(SPACE, **{"units": 16, **kwargs})


@pytest.mark.slow
def test_controller_samples_valid_architectures():
    ctl = controller(seed=3)
    seen = set()
    for _ in range(8):
        sample = ctl.sample()
        assert len(sample["ops"]) == SPACE.num_layers
        assert all(0 <= op < len(OPS) for op in sample["ops"])
        for i, bits in enumerate(sample["skips"]):
            assert len(bits) == len(SPACE.skip_sources(i))
            assert set(bits) <= {0, 1}
        spec = ctl.spec(sample)
        check_spec(spec)
        assert [OPS.index(layer["op"]) for layer in spec["layers"]] == sample["ops"]
        seen.add(json.dumps(sample))
    assert len(seen) > 1  # it samples, not a fixed architecture
    with pytest.raises(ValueError, match="skip decisions"):
        ctl.log_prob({"ops": [0] * 9, "skips": [[]] * 9})
    with pytest.raises(ValueError, match="`units` must be an int >= 1"):
        controller(units=0)


@pytest.mark.parametrize("reward, sign", [(1.0, 1), (0.0, -1)])
def test_reinforce_step_follows_the_policy_gradient(reward, sign):
    """Adam's first step is `lr * sign(g)`; with no skip or entropy terms the
    loss is `-(R - b) log pi(m)`, so `log pi(m)` moves by
    `lr * sign(R - b) * sum |d log pi(m) / d theta|` to first order."""
    import tensorflow as tf

    ctl = controller(seed=1, skip_weight=0.0, entropy_weight=0.0)
    sample = ctl.sample()
    ctl.baseline = 0.5  # R - b' = +-0.5 * 0.99 after the baseline's update
    variables = ctl.network.trainable_variables
    with tf.GradientTape() as tape:
        log_prob = ctl._score([sample])[0][0]
    grads = tape.gradient(log_prob, variables)
    predicted = ctl.learning_rate * sign * sum(float(np.abs(g).sum()) for g in grads)
    before = ctl.log_prob(sample)
    stats = ctl.update([sample], [reward])
    after = ctl.log_prob(sample)
    assert np.sign(after - before) == sign
    assert after - before == pytest.approx(predicted, rel=0.2)
    assert stats["baseline"] == pytest.approx(0.5 - 0.01 * (0.5 - reward))


@pytest.mark.slow
def test_reinforce_learns_a_toy_reward():
    """Reward 1 for conv3x3 in layer 0, else 0: its probability rises."""
    from keras import ops

    # A large step and a fast baseline: a few updates suffice.
    ctl = controller(seed=2, learning_rate=0.1, baseline_decay=0.9)

    def p_first_op_is_conv3x3():
        # The first decision: one LSTM step from the start input.
        net = ctl.network
        zeros = ops.zeros((1, ctl.units))
        out, _ = ctl._lstm(net.start, (zeros, zeros))
        logits = ctl.tanh_constant * ops.tanh(ops.matmul(out, net.softmax))
        return float(ops.softmax(logits)[0, OPS.index("conv3x3")])

    before = p_first_op_is_conv3x3()
    for _ in range(12):
        samples = [ctl.sample() for _ in range(4)]
        ctl.update(samples, [float(s["ops"][0] == 0) for s in samples])
    assert p_first_op_is_conv3x3() > before + 0.2


def test_controller_state_round_trip_reproduces_the_next_sample():
    a = controller(seed=4)
    for _ in range(2):
        samples = [a.sample(), a.sample()]
        a.update(samples, [0.3, 0.7])
    state = json.loads(json.dumps(a.get_state()))  # JSON-safe
    b = controller(seed=9)
    b.set_state(state)
    assert b.baseline == a.baseline and b.updates == a.updates == 2
    nxt = a.sample()
    assert b.sample() == nxt
    assert b.log_prob(nxt) == a.log_prob(nxt)
    a.update([nxt], [0.9])  # Adam's moments came back too
    b.update([nxt], [0.9])
    for x, y in zip(a.network.weights, b.network.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    with pytest.raises(ValueError, match="weights"):
        controller(seed=0).set_state({**state, "weights": state["weights"][:-1]})


def toy_rewards(values):
    """A controller trial's rewards: the share of conv3x3 ops of each sample."""
    from spzoo.tuners.enas_oracle import TASK, reward_name

    task = json.loads(values[TASK])
    rewards = [s["ops"].count(0) / len(s["ops"]) for s in task["samples"]]
    return {
        "val_accuracy": float(np.mean(rewards)),
        **{reward_name(i): r for i, r in enumerate(rewards)},
    }


def make_oracle(directory, **kwargs):
    from spzoo.tuners.enas_oracle import EnasOracle

    settings = dict(
        epochs=2,
        shared_steps=3,
        controller_steps=2,
        controller_aggregate=2,
        derive_samples=2,
        seed=5,
        units=16,
    )
    oracle = EnasOracle(SPACE, **{**settings, **kwargs})
    oracle._set_project_dir(str(directory), "enas")
    return oracle


@pytest.mark.slow
def test_enas_oracle_alternates_and_resumes_exactly(tmp_path, drive_oracle):
    from keras_tuner.engine.trial import TrialStatus

    from spzoo.tuners.enas_oracle import TASK

    reference = make_oracle(tmp_path / "reference")
    assert drive_oracle(reference, toy_rewards, 20) == TrialStatus.STOPPED
    tasks = [
        json.loads(reference.trials[t].hyperparameters.values[TASK])
        for t in sorted(reference.trials)
    ]
    assert [t["phase"] for t in tasks] == ["shared", "controller", "controller"] * 2 + [
        "derive"
    ] * 2
    assert [len(t["samples"]) for t in tasks] == [3, 2, 2, 3, 2, 2, 1, 1]
    # Each phase starts from the shared weights of the last shared trial.
    assert [t["weights"] for t in tasks] == [None, "0", "0", "0", "3", "3", "3", "3"]
    assert len(reference.log) == 4 and reference.controller.updates == 4
    best = reference.get_best_trials(2)
    assert sorted(t.trial_id for t in best) == ["6", "7"]

    # Killed after trial 4 ended (its state written), resumed by a new oracle.
    directory = tmp_path / "killed"
    first = make_oracle(directory)
    drive_oracle(first, toy_rewards, 5)
    resumed = make_oracle(directory)
    resumed.reload()
    assert resumed.position == 5 and resumed.controller.updates == 3
    assert drive_oracle(resumed, toy_rewards, 20) == TrialStatus.STOPPED
    assert len(resumed.trials) == len(reference.trials) == 8
    for trial_id, trial in reference.trials.items():
        assert resumed.trials[trial_id].hyperparameters.values == (
            trial.hyperparameters.values
        )
    assert resumed.log == reference.log

    with pytest.raises(ValueError, match="controller_steps=2 \\(this run: 3\\)"):
        make_oracle(directory, controller_steps=3).reload()


def test_enas_oracle_is_sequential(tmp_path):
    from keras_tuner.engine.trial import TrialStatus

    oracle = make_oracle(tmp_path)
    assert oracle.create_trial("tuner0").status == TrialStatus.RUNNING
    assert oracle.create_trial("tuner1").status == TrialStatus.IDLE
    with pytest.raises(ValueError, match="`controller_aggregate` must be an int"):
        make_oracle(tmp_path / "other", controller_aggregate=0)


@pytest.mark.slow
def test_enas_tuner_trains_the_shared_weights_and_derives(tmp_path):
    from spzoo.tuners.enas_tuner import run_enas_search

    rng = np.random.default_rng(0)
    data = (
        rng.random((48, 8, 8, 1)).astype("float32"),
        rng.integers(0, 3, 48),
        rng.random((24, 8, 8, 1)).astype("float32"),
        rng.integers(0, 3, 24),
    )
    space = MacroSpace(num_layers=3, num_segments=1, filters=4)
    kwargs = dict(
        epochs=2,
        shared_steps=2,
        controller_steps=1,
        controller_aggregate=2,
        derive_samples=2,
        batch_size=8,
        eval_batch_size=8,
    )
    found = run_enas_search(space, data, str(tmp_path), **kwargs)
    # 2 x (1 shared + 1 controller) + 2 derive trials.
    assert found["trials"] == 6 and found["best_trial"] in ("4", "5")
    check_spec(found["spec"])
    assert len(found["controller"]) == 2
    project = tmp_path / "macro_enas"
    # Only the last shared-weights trial's w is kept (and the initial one).
    assert sorted(os.path.basename(p) for p in glob.glob(f"{project}/*.h5")) == [
        "supernet.initial.weights.h5",
        "supernet.trial_2.weights.h5",
    ]
    again = run_enas_search(space, data, str(tmp_path), **kwargs)  # finished
    assert again["best_trial"] == found["best_trial"]
    with pytest.raises(ValueError, match="batch_size=8 \\(this run: 4\\)"):
        run_enas_search(space, data, str(tmp_path), **{**kwargs, "batch_size": 4})


NHN_ENAS = [
    "search",
    "nhn",
    "--dataset",
    "sklearn_digits",
    "--budget",
    "tiny",
    "--macro",
    "enas",
    "--final-recipe",
    "base",
    "--verbose",
    "0",
]


def enas_trials(project) -> dict:
    """`{trial id: (status, values, metrics)}` of the ENAS project's trials."""
    out = {}
    for path in glob.glob(os.path.join(project, "trial_*", "trial.json")):
        with open(path) as f:
            trial = json.load(f)
        out[trial["trial_id"]] = (
            trial["status"],
            trial["hyperparameters"]["values"],
            trial["metrics"]["metrics"],
        )
    return out


@pytest.mark.slow
def test_spzoo_search_nhn_macro_enas_resumes_after_sigkill(tmp_path):
    directory = str(tmp_path / "run")
    project = os.path.join(directory, "nhn", "macro_enas")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "spzoo.cli", *NHN_ENAS, "--directory", directory]
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def done():
        return [t for t, v in enas_trials(project).items() if v[0] == "COMPLETED"]

    deadline = time.time() + 600
    while time.time() < deadline and len(done()) < 3:  # of 8: mid-search
        if process.poll() is not None:
            pytest.fail(process.stdout.read().decode()[-3000:])
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {t: v for t, v in enas_trials(project).items() if v[0] == "COMPLETED"}
    assert 3 <= len(before) < 8, "the kill did not fall in the middle of the search"

    resumed = subprocess.run(argv, env=env, capture_output=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stdout.decode()[-3000:]
    assert "| NHN |" in resumed.stdout.decode()
    after = enas_trials(project)
    # The same number of trials as an uninterrupted search, each once.
    assert sorted(after) == [str(i) for i in range(8)]
    assert all(status == "COMPLETED" for status, _, _ in after.values())
    for trial_id, value in before.items():
        assert after[trial_id] == value  # kept, not run again
    stage = json.loads((tmp_path / "run" / "nhn" / "macro" / "stage.json").read_text())
    assert stage["macro"] == "enas" and stage["trials"] == 8
    assert stage["best_trial"] in ("6", "7") and len(stage["controller"]) == 4

    # Another --macro on the finished stage is refused (exit 2), and the
    # deprecated flag conflicts with --macro enas.
    from spzoo.cli import main

    assert main([*NHN_ENAS[:6], "--macro", "random", "--directory", directory]) == 2
    assert main([*NHN_ENAS, "--macro-supernet", "--directory", directory]) == 2


def tiny_data():
    rng = np.random.default_rng(0)
    return (
        rng.random((48, 8, 8, 1)).astype("float32"),
        rng.integers(0, 3, 48),
        rng.random((24, 8, 8, 1)).astype("float32"),
        rng.integers(0, 3, 24),
    )


def distributed_search(kind: str, directory: str) -> None:
    """One process of a chief/worker macro search (`kind`: enas or random);
    every tuner appends the trials it runs to `<directory>/ran.<tuner id>`."""
    import tensorflow as tf

    from spzoo.tuners.enas_oracle import EnasOracle
    from spzoo.tuners.enas_tuner import EnasTuner
    from spzoo.tuners.macro_search import MacroSearchOracle, MacroTuner

    tuner_id = os.environ["KERASTUNER_TUNER_ID"]

    class Recording:
        def run_trial(self, trial, *args, **kwargs):
            with open(os.path.join(directory, f"ran.{tuner_id}"), "a") as f:
                f.write(trial.trial_id + "\n")
            return super().run_trial(trial, *args, **kwargs)

    space = MacroSpace(num_layers=3, num_segments=1, filters=4)
    data = tiny_data()
    if kind == "enas":
        oracle = EnasOracle(
            space,
            epochs=2,
            shared_steps=2,
            controller_steps=1,
            controller_aggregate=2,
            derive_samples=2,
            units=16,
        )
        tuner = type("T", (Recording, EnasTuner), {})(
            oracle,
            data,
            batch_size=8,
            eval_batch_size=8,
            directory=directory,
            project_name="enas",
        )
        tuner.search(verbose=0)
    else:
        oracle = MacroSearchOracle(space, max_trials=4, seed=1)
        tuner = type("T", (Recording, MacroTuner), {})(
            oracle, (8, 8, 1), 3, steps=2, directory=directory, project_name="random"
        )
        train = tf.data.Dataset.from_tensor_slices(data[:2]).batch(8)
        val = tf.data.Dataset.from_tensor_slices(data[2:]).batch(8)
        tuner.search(train, val, verbose=0)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("kind, total", [("random", 4), ("enas", 6)])
def test_macro_search_chief_and_two_workers(tmp_path, kind, total):
    directory = str(tmp_path)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(free_port()),
    }

    def start(tuner_id):
        return subprocess.Popen(
            [sys.executable, __file__, kind, directory],
            env={**env, "KERASTUNER_TUNER_ID": tuner_id},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    chief = start("chief")
    time.sleep(2)
    workers = [start(f"tuner{i}") for i in range(2)]
    try:
        for p in [*workers, chief]:
            try:
                output, _ = p.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{kind}: a process timed out")
            assert p.returncode == 0, output.decode()[-3000:]
    finally:
        for p in [chief, *workers]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    ran = []
    for name in glob.glob(os.path.join(directory, "ran.*")):
        with open(name) as f:
            ran += f.read().split()
    assert sorted(ran) == [str(i) for i in range(total)]  # none lost, none twice
    assert not os.path.exists(os.path.join(directory, "ran.chief"))
    trials = enas_trials(os.path.join(directory, kind))
    assert sorted(trials) == sorted(ran)
    assert all(status == "COMPLETED" for status, _, _ in trials.values())


if __name__ == "__main__":  # a process of the chief/worker test
    distributed_search(sys.argv[1], sys.argv[2])
