"""`spzoo search nhn` end to end on an offline dataset (tiny budget), resumed."""

import json

import pytest

from spzoo.cli import main

# The whole pipeline trains several networks.
pytestmark = pytest.mark.slow


def test_nhn_pipeline_runs_and_resumes(tmp_path, capsys):
    argv = [
        "search",
        "nhn",
        "--dataset",
        "sklearn_digits",
        "--budget",
        "tiny",
        "--directory",
        str(tmp_path),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| NHN |" in out and "| DNP |" in out
    root = tmp_path / "nhn"
    for stage in ("macro", "base", "pruned", "lds", "final"):
        assert (root / stage / "stage.json").is_file()
    summary = json.loads((root / "summary.json").read_text())
    assert summary["pruned"]["params"] <= summary["base"]["params"]
    spec = json.loads((root / "final" / "spec.json").read_text())
    assert spec["family"] == "nhn" and "addons" in spec
    first = (root / "final" / "stage.json").read_text()
    assert main(argv) == 0  # every stage done: nothing re-runs
    assert (root / "final" / "stage.json").read_text() == first
    # The final NHN is a plain Keras model that exports like every zoo model.
    import keras

    from spzoo.export import export

    model = keras.saving.load_model(str(root / "final" / "model.keras"), compile=False)
    report = export(
        model, tmp_path / "nhn.onnx", format="onnx", dataset="sklearn_digits"
    )
    assert all(r.top1_agreement == 1.0 for r in report.parity)

    # The final stage again with the base recipe: only that stage re-runs.
    pruned = (root / "pruned" / "stage.json").read_text()
    assert main([*argv, "--final-recipe", "base"]) == 0
    final = json.loads((root / "final" / "stage.json").read_text())
    assert final["recipe"] == "base"
    assert json.loads((root / "final" / "spec.json").read_text())["dropout"] == 0.0
    assert (root / "pruned" / "stage.json").read_text() == pruned
