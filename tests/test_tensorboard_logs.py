"""TensorBoard logs of `spzoo train` and `spzoo search`, read back."""

import json

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from spzoo import cli

pytestmark = pytest.mark.slow


def scalars(logdir) -> dict:
    """`{tag: [values by step]}` of the scalar summaries in one run folder."""
    accumulator = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return {
        tag: [float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()[event_accumulator.TENSORS]
    }


def test_train_logs_every_epoch(tmp_path, capsys):
    args = ["train", "cnn_reference", "--dataset", "sklearn_digits", "--epochs", "2"]
    args += ["--steps-per-epoch", "2", "--batch-size", "16"]
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 0
    logs = tmp_path / "cnn_reference.sklearn_digits.tensorboard"
    assert f"TensorBoard logs in {logs}" in capsys.readouterr().out
    train, validation = scalars(logs / "train"), scalars(logs / "validation")
    record = json.loads((tmp_path / "cnn_reference.sklearn_digits.json").read_text())
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert len(train[tag]) == 2, tag
    for tag in ("epoch_loss", "epoch_accuracy"):
        assert len(validation[tag]) == 2, tag
    # The last validation epoch is the model the run shipped.
    assert validation["epoch_accuracy"][-1] == pytest.approx(record["eval_accuracy"])


def test_growth_search_logs_every_trial_with_its_hparams(tmp_path, capsys):
    args = ["search", "growth", "--dataset", "sklearn_digits", "--budget", "tiny"]
    args += ["--blocks", "1", "--population", "2", "--sample", "1"]
    args += ["--iterations", "2", "--initial-growth", "1", "--verbose", "0"]
    assert cli.main([*args, "--directory", str(tmp_path)]) == 0
    logs = tmp_path / "growth" / "tensorboard"
    trials = sorted(p.name for p in logs.iterdir())
    assert len(trials) == 2
    summary = json.loads((tmp_path / "growth" / "search.json").read_text())
    accuracies = {h["trial_id"]: h["val_accuracy"] for h in summary["history"]}
    for trial in trials:
        run = logs / trial / "execution0"
        train = scalars(run / "train")
        assert train["epoch_loss"] and train["epoch_accuracy"]
        evaluation = scalars(run / "validation")
        assert evaluation["evaluation_accuracy_vs_iterations"][-1] == pytest.approx(
            accuracies[trial]
        )
        # KerasTuner's HParams record of the trial (the HParams dashboard).
        plugins = event_accumulator.EventAccumulator(str(run))
        plugins.Reload()
        assert "_hparams_/session_start_info" in plugins.PluginTagToContent("hparams")


def test_pruning_search_logs_every_iteration(tmp_path):
    args = ["search", "pruning", "--dataset", "sklearn_digits", "--budget", "tiny"]
    args += ["--blocks", "1", "--iterations", "1", "--remove", "2"]
    args += ["--max-drop", "0.9", "--verbose", "0"]
    assert cli.main([*args, "--directory", str(tmp_path)]) == 0
    logs = tmp_path / "pruning" / "tensorboard"
    trials = sorted(p.name for p in logs.iterdir())
    assert len(trials) == 2  # the trained network and one pruning iteration
    for trial in trials:
        run = logs / trial / "execution0"
        assert scalars(run / "train")["epoch_loss"]
        assert scalars(run / "validation")["evaluation_accuracy_vs_iterations"]
    off = tmp_path / "off"
    assert cli.main([*args, "--directory", str(off), "--no-tensorboard"]) == 0
    assert not (off / "pruning" / "tensorboard").exists()


def test_random_macro_search_logs_every_trained_candidate(tmp_path):
    import numpy as np

    from spzoo.nhn.macro_space import MacroSpace
    from spzoo.tuners.base import tensorboard_callbacks
    from spzoo.tuners.macro_search import MacroSearchOracle, MacroTuner

    space = MacroSpace(num_layers=3, num_segments=1, filters=4)
    oracle = MacroSearchOracle(space, max_trials=2, seed=1)
    tuner = MacroTuner(
        oracle, (8, 8, 1), 3, steps=2, directory=str(tmp_path), project_name="macro"
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 16).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    tuner.search(data, data, verbose=0, callbacks=tensorboard_callbacks(tuner))
    logs = tmp_path / "macro" / "tensorboard"
    trials = sorted(p.name for p in logs.iterdir())
    assert len(trials) == 2
    for trial in trials:
        run = logs / trial / "execution0"
        assert scalars(run / "train")["epoch_loss"]
        accuracy = scalars(run / "validation")["evaluation_accuracy_vs_iterations"]
        assert accuracy[-1] == pytest.approx(oracle.trials[trial].score)
