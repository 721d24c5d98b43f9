"""The `spzoo` command line and the paper's training recipe."""

import json
import shutil
import subprocess

import keras
import numpy as np
import pytest

from spzoo import cli
from spzoo.models import resnet_spec
from spzoo.training import paper_optimizer, paper_schedule


def test_paper_schedule_decays_by_80_percent_at_each_30_percent():
    schedule = paper_schedule(100)
    lrs = [float(schedule(step)) for step in (0, 29, 31, 59, 61, 89, 91, 99)]
    np.testing.assert_allclose(
        lrs, [1e-2, 1e-2, 2e-3, 2e-3, 4e-4, 4e-4, 8e-5, 8e-5], rtol=1e-5
    )
    optimizer = paper_optimizer(100)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9 and optimizer.coupled_weight_decay == 5e-4
    assert optimizer.weight_decay is None  # not Keras's decoupled form


@pytest.mark.slow
def test_models_command_lists_every_architecture(capsys):
    assert cli.main(["models", "--input-shape", "16,16,1", "--num-classes", "4"]) == 0
    out = capsys.readouterr().out
    for name in ("resnet_3_48", "resnet_struct", "resnet_op", "sp_resnet"):
        assert name in out
    assert "16x16x1" in out


@pytest.mark.slow
def test_train_command_writes_model_and_metrics(tmp_path, capsys):
    spec = resnet_spec(1, 4, [0.45, 0.40, 0.15])
    spec["name"] = "tiny_sp"
    spec_path = tmp_path / "tiny_sp.json"
    spec_path.write_text(json.dumps(spec))
    args = [
        "train",
        str(spec_path),
        "--dataset",
        "mnist_5k",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--output-dir",
        str(tmp_path / "runs"),
        "--no-tensorboard",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "eval accuracy" in out and "model written to" in out
    metrics = json.loads((tmp_path / "runs" / "tiny_sp.mnist_5k.json").read_text())
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert metrics["params"] > 0 and metrics["macs"] > 0
    assert metrics["recipe"]["momentum"] == 0.9
    model = keras.models.load_model(tmp_path / "runs" / "tiny_sp.mnist_5k.keras")
    assert model.output.shape == (None, 10)
    # Nothing half-written, no backup left behind after a finished run, and
    # no TensorBoard logs with --no-tensorboard.
    leftovers = [p.name for p in (tmp_path / "runs").iterdir()]
    assert sorted(leftovers) == ["tiny_sp.mnist_5k.json", "tiny_sp.mnist_5k.keras"]


def test_cli_errors_are_clear(capsys):
    assert cli.main(["train", "nope", "--dataset", "mnist_5k"]) == 2
    assert "Unknown architecture 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "sp_resnet", "--dataset", "nope"]) == 2
    assert "Unknown `dataset` 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["models", "--input-shape", "16,16"])


@pytest.mark.skipif(shutil.which("spzoo") is None, reason="spzoo not installed")
def test_console_script_is_installed():
    result = subprocess.run(
        ["spzoo", "--help"], capture_output=True, text=True, check=True
    )
    assert "models" in result.stdout and "train" in result.stdout


@pytest.mark.slow
def test_sweep_command_prints_the_threshold_table_and_plot(tmp_path, capsys):
    from spzoo.models import build

    model = build("gated_cnn", (28, 28, 1), 10)
    path = tmp_path / "gated.keras"
    model.save(path)
    png = tmp_path / "curve.png"
    args = [
        "sweep",
        str(path),
        "--dataset",
        "mnist_5k",
        "--thresholds",
        "none,0,8",
        "--limit",
        "64",
        "--plot",
        str(png),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| threshold | accuracy (%) |" in out
    table = [line for line in out.splitlines() if line.startswith("| ")][2:]
    assert len(table) == 3
    macs = [float(line.split("|")[3].replace(",", "")) for line in table]
    assert macs[0] >= macs[1] >= macs[2]  # a higher threshold never costs more
    assert png.stat().st_size > 0
    with pytest.raises(SystemExit):
        cli.main(["sweep", str(path), "--dataset", "mnist_5k", "--thresholds", "a"])
