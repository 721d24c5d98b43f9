"""`spzoo train --strategy multi-worker`: two CPU workers on 127.0.0.1.

The model is `cnn_reference` (convolutions, ReLU, max pooling, a dense
head: no batch normalisation, whose per-replica statistics would make two
workers of 8 examples differ from one of 16 by design), so the two workers
compute the same training steps as one process with the same global batch.
That process runs `--strategy mirrored` (one replica on a CPU): under every
strategy `fit` draws the same first reshuffle of the data for building the
model (see `spzoo.training.distribute`), so both see the same batches.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import spzoo.models  # noqa: F401  (registers the layers of saved models)
import spzoo.training  # noqa: F401  (registers CoupledDecaySGD)
from spzoo import cli
from spzoo.training import distribute

pytestmark = pytest.mark.slow

NAME = "cnn_reference.sklearn_digits"
TRAIN = ["train", "cnn_reference", "--dataset", "sklearn_digits"]
TRAIN += ["--batch-size", "16", "--steps-per-epoch", "2"]
# Each process starts TensorFlow, joins the cluster and traces its steps:
# a minute or two on a busy 2-core machine.
TIMEOUT = 900


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    )


def run_spzoo(args, log, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "spzoo.cli", *args],
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "-1",
            **(env or {}),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Cluster:
    """Processes of one test, all SIGKILLed at the end (MWMS catches SIGTERM)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes = []

    def start(self, args, name, env=None):
        log = open(self.tmp_path / f"{name}.log", "ab")
        process = run_spzoo(args, log, env)
        process.log_path = self.tmp_path / f"{name}.log"
        self.processes.append(process)
        return process

    def workers(self, args, tag):
        ports = free_ports(2)
        return [
            self.start(
                [*args, "--strategy", "multi-worker"],
                f"{tag}{i}",
                {"TF_CONFIG": tf_config(ports, i)},
            )
            for i in range(2)
        ]

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def output(process) -> str:
    return process.log_path.read_text(errors="replace")


def finish(process, deadline):
    try:
        process.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out:\n{output(process)[-3000:]}")
    assert process.returncode == 0, output(process)[-3000:]
    return output(process)


def weights(folder):
    model = keras.saving.load_model(folder / f"{NAME}.keras", compile=False)
    return model.get_weights()


@pytest.fixture
def cluster(tmp_path):
    processes = Cluster(tmp_path)
    try:
        yield processes
    finally:
        processes.kill_all()


def test_two_workers_train_like_one_process_with_the_global_batch(tmp_path, cluster):
    args = [*TRAIN, "--epochs", "3", "--no-tensorboard"]
    single = tmp_path / "single"
    multi = tmp_path / "multi"
    deadline = time.time() + TIMEOUT
    reference = cluster.start(
        [*args, "--strategy", "mirrored", "--output-dir", str(single)], "single"
    )
    workers = cluster.workers([*args, "--output-dir", str(multi)], "worker")
    chief_out = finish(workers[0], deadline)
    worker_out = finish(workers[1], deadline)
    finish(reference, deadline)
    assert "model written to" in chief_out
    assert "worker 1 finished" in worker_out and "model written" not in worker_out
    # Only the chief wrote, and nothing else is left.
    assert sorted(p.name for p in multi.iterdir()) == [f"{NAME}.json", f"{NAME}.keras"]
    record = json.loads((multi / f"{NAME}.json").read_text())
    assert record["strategy"] == {"name": "multi-worker", "replicas": 2}
    one = json.loads((single / f"{NAME}.json").read_text())
    assert one["strategy"] == {"name": "mirrored", "replicas": 1}

    # Tolerance: the same 6 SGD steps on the same 16 examples each; only the
    # float32 summation order differs (two sums of 8 per-example gradients,
    # each scaled by 1/2, then all-reduced, against one sum of 16 scaled by
    # 1/16): a few float32 ulps (7.5e-9 at magnitude 0.1) per step, which
    # is what two workers reached here (7.5e-9). 1e-6 keeps a 100x margin
    # and is still 1000x below how far the steps moved the weights (1e-3 to
    # 1e-2), which the last assertion checks.
    trained, reference_weights = weights(multi), weights(single)
    keras.utils.set_random_seed(0)
    initial = spzoo.models.build("cnn_reference", (8, 8, 1), 10).get_weights()
    for w, r, w0 in zip(trained, reference_weights, initial, strict=True):
        np.testing.assert_allclose(w, r, rtol=0, atol=1e-6)
        assert np.abs(r - w0).max() > 1e-4  # the steps moved every weight
    assert record["eval_accuracy"] == pytest.approx(one["eval_accuracy"], abs=1e-6)
    assert record["eval_loss"] == pytest.approx(one["eval_loss"], abs=1e-4)


def epochs_run(text: str) -> list:
    """The epoch numbers of `EpochProgress`'s lines ("epoch 3/40: ...", maybe
    after a progress bar's last line)."""
    return [int(n) for n in re.findall(r"(?<![A-Za-z])epoch (\d+)/\d+: ", text)]


def test_killing_a_worker_and_restarting_the_cluster_resumes(tmp_path, cluster):
    # The kill lands right after the backup of epoch 2 (a 0.1 s poll); the
    # peers stop within an epoch of it (the next collective fails), so 6
    # epochs leave the resumed cluster at least one to run. Every epoch the
    # resumed run trains (with its backup and evaluation) costs seconds.
    epochs = 6
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", str(epochs), "--output-dir", str(out)]
    metadata = out / f"{NAME}.backup" / "training_metadata.json"
    deadline = time.time() + TIMEOUT
    first = cluster.workers(args, "first")
    while time.time() < deadline:
        if metadata.is_file():
            try:
                if json.loads(metadata.read_text())["epoch"] >= 2:
                    break
            except (ValueError, KeyError):
                pass  # being written
        assert all(p.poll() is None for p in first), output(first[0])[-3000:]
        time.sleep(0.1)
    else:
        pytest.fail(f"no backup of epoch 2:\n{output(first[0])[-3000:]}")
    os.killpg(first[1].pid, signal.SIGKILL)
    first[1].wait()
    # The chief cannot go on without its peer: it fails (collective ops
    # abort) or waits; either way the cluster is restarted, as TensorFlow's
    # multi-worker guide prescribes.
    try:
        first[0].wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(first[0].pid, signal.SIGKILL)
        first[0].wait()
    done = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done < epochs and not (out / f"{NAME}.keras").exists()

    second = cluster.workers(args, "second")
    chief_out = finish(second[0], deadline)
    finish(second[1], deadline)
    resumed = epochs_run(chief_out)
    assert resumed[0] == done + 1 and resumed[-1] == epochs  # continued
    record = json.loads((out / f"{NAME}.json").read_text())
    assert record["epochs_timed"] == epochs - done
    # TensorBoard: the chief's logs hold every epoch, from both runs.
    assert not (out / f"{NAME}.backup").exists()
    assert (out / f"{NAME}.tensorboard" / "train").is_dir()


def test_multi_worker_needs_tf_config(monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable"):
        distribute.check_tf_config()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {}}')
    with pytest.raises(ValueError, match="names no job"):
        distribute.check_tf_config()
    monkeypatch.setenv("TF_CONFIG", "{")
    assert cli.main([*TRAIN, "--strategy", "multi-worker"]) == 2
    assert "TF_CONFIG is not JSON" in capsys.readouterr().err
