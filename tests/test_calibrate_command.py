"""`spzoo calibrate`: batch-norm statistics per threshold level of a trained
gated model, written beside its record; fine-tuning from the result."""

import json

import keras
import numpy as np
import pytest
from test_gated_fine_tuning import SPEC  # the tiny gated ResNet of these tests

import spzoo.models
from spzoo.cli import main
from spzoo.layers import PresynapticGate, SwitchableBatchNormalization
from spzoo.training.budget import budget_threshold

NAME = "tiny_gated_resnet.sklearn_digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A gated model as `spzoo train` leaves it: `.keras` + its record."""
    folder = tmp_path_factory.mktemp("trained")
    model = spzoo.models.build(SPEC, (8, 8, 1), 10, name="tiny")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, PresynapticGate):
            log_alpha = rng.normal(2.0, 2.0, layer.filters).astype("float32")
            layer.presynaptic_bias.assign(log_alpha / layer.log_alpha_scale)
    model.save(folder / f"{NAME}.keras")
    record = {
        "name": NAME,
        "arch": "tiny_gated_resnet",
        "spec": SPEC,
        "dataset": "sklearn_digits",
        "eval_accuracy": 0.1,
        "recipe": {"command": "spzoo train tiny --dataset sklearn_digits --seed 0"},
    }
    (folder / f"{NAME}.json").write_text(json.dumps(record))
    return folder / f"{NAME}.keras"


def test_calibrate_writes_the_model_with_levels_and_its_record(
    trained, tmp_path, capsys
):
    out_dir = tmp_path / "cal"
    argv = ["calibrate", str(trained), "--dataset", "sklearn_digits"]
    argv += ["--examples", "256", "--batch-size", "64", "--eval-examples", "100"]
    assert main([*argv, "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "batch norm level 0 (threshold none): 256 examples" in out
    assert "threshold none: " in out and " -> " in out
    assert f"model written to {out_dir / trained.name}" in out
    record = json.loads((out_dir / f"{NAME}.json").read_text())
    calibration = record["recipe"]["batch_norm_calibration"]
    levels = calibration["levels"]
    assert levels and calibration["examples"] == 256
    assert len(calibration["per_level"]) == len(levels) + 1
    fractions = [row["macs_fraction"] for row in calibration["per_level"]]
    assert fractions == sorted(fractions, reverse=True)
    assert record["recipe"]["command"].startswith(
        f"spzoo train tiny --dataset sklearn_digits --seed 0 --output-dir "
        f"{trained.parent} && spzoo calibrate {trained} --dataset sklearn_digits"
    )
    model = keras.saving.load_model(out_dir / trained.name)
    switchable = [
        layer
        for layer in model.layers
        if isinstance(layer, SwitchableBatchNormalization)
    ]
    assert switchable and all(layer.levels == levels for layer in switchable)
    assert 0 <= record["eval_accuracy"] <= 1


@pytest.mark.slow
def test_a_calibrated_model_is_a_starting_point_for_training(trained, tmp_path):
    """`--init-from` a calibrated file: its level-0 statistics go to the
    plain batch norms of the model being trained."""
    out_dir = tmp_path / "cal"
    argv = ["calibrate", str(trained), "--dataset", "sklearn_digits"]
    argv += ["--examples", "128", "--batch-size", "64", "--eval-examples", "0"]
    assert main([*argv, "--output-dir", str(out_dir)]) == 0
    spec_path = tmp_path / "tiny_gated_resnet.json"
    spec_path.write_text(json.dumps(SPEC))
    argv = ["train", str(spec_path), "--dataset", "sklearn_digits", "--epochs", "1"]
    argv += ["--steps-per-epoch", "1", "--batch-size", "16", "--lr", "1e-9"]
    argv += ["--init-from", str(out_dir / trained.name)]
    assert main([*argv, "--output-dir", str(tmp_path / "runs")]) == 0
    # The transfer itself (the run above also trained one step, which moves
    # the moving statistics): level 0 into the plain batch norm.
    from spzoo.zoo.finetune import transfer_weights

    calibrated = keras.saving.load_model(out_dir / trained.name)
    fresh = spzoo.models.build(SPEC, (8, 8, 1), 10)
    transfer_weights(calibrated, fresh)
    name = next(
        layer.name
        for layer in calibrated.layers
        if isinstance(layer, SwitchableBatchNormalization)
    )
    np.testing.assert_array_equal(
        np.asarray(fresh.get_layer(name).moving_mean),
        np.asarray(calibrated.get_layer(name).moving_mean)[0],
    )
    assert (tmp_path / "runs" / f"{NAME}.keras").is_file()


def test_bad_arguments_are_one_line_errors(trained, tmp_path, capsys):
    base = ["calibrate", str(trained), "--dataset", "sklearn_digits"]
    assert main([*base, "--output-dir", str(trained.parent)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"spzoo: error: `output_dir` {str(trained.parent)!r} holds the input "
        "model; choose another folder (the calibrated model keeps the file name)."
    )
    argv = [*base, "--examples", "10", "--output-dir", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "spzoo: error: `examples` must be in [256, 1438] (batch size to the "
        "training split); received 10."
    )
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main([*base, "--levels", "none", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "levels are numbers, not 'none'" in capsys.readouterr().err
    assert main([*base, "--levels", "2,1", "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "spzoo: error: `levels` must be a list of finite, strictly increasing "
        "thresholds; received [2.0, 1.0]."
    )


def test_keep_above_keeps_the_trained_statistics_of_the_dearer_levels(
    trained, tmp_path, capsys
):
    """`--keep-above F`: no threshold and the levels down to the one costing at
    most F of the ungated MACs keep the model's statistics; the cheaper ones
    are calibrated."""
    out_dir = tmp_path / "cal"
    argv = ["calibrate", str(trained), "--dataset", "sklearn_digits"]
    argv += ["--examples", "256", "--batch-size", "64", "--eval-examples", "0"]
    assert main([*argv, "--keep-above", "0.5", "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "batch norm level 0 (threshold none): kept" in out
    record = json.loads((out_dir / f"{NAME}.json").read_text())
    calibration = record["recipe"]["batch_norm_calibration"]
    assert calibration["keep_above"] == 0.5
    assert record["recipe"]["command"].endswith("--keep-above 0.5")
    rows = calibration["per_level"]
    kept = [row["statistics"] == "trained" for row in rows]
    original = keras.saving.load_model(trained)
    # The range `--threshold-training 0.5` trains: down to the 50% level.
    high = float(np.float32(budget_threshold(original, 0.5)))
    assert high in calibration["levels"]
    assert kept == [
        row["threshold"] is None or row["threshold"] <= high for row in rows
    ]
    cheaper = [row for row, k in zip(rows, kept, strict=True) if not k]
    assert all(row["macs_fraction"] <= 0.5 for row in cheaper)
    assert any(kept) and not all(kept)
    model = keras.saving.load_model(out_dir / trained.name)
    for layer in model.layers:
        if not isinstance(layer, SwitchableBatchNormalization):
            continue
        mean = np.asarray(layer.moving_mean)
        source = np.asarray(original.get_layer(layer.name).moving_mean)
        for row, is_kept in enumerate(kept):
            assert np.array_equal(mean[row], source) == is_kept
    summary = f"{kept.count(False)} of {len(kept)} batch-norm levels calibrated"
    assert summary in out and f"({kept.count(True)} kept their trained" in out


def test_keep_above_must_be_a_fraction(trained, tmp_path, capsys):
    argv = ["calibrate", str(trained), "--dataset", "sklearn_digits"]
    assert main([*argv, "--keep-above", "1.5", "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "spzoo: error: `keep_above` must be a fraction of the ungated MACs in "
        "(0, 1); received 1.5."
    )
