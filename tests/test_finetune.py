"""Fine-tuning from the zoo: `zoo.load(name, num_classes=K)` and
`spzoo train ARCH --init-from ZOO_NAME`, on a tiny zoo of one tiny model."""

import json

import keras
import numpy as np
import pytest

from spzoo import models, zoo
from spzoo.cli import main
from spzoo.training.job import init_from_zoo
from spzoo.zoo.finetune import head_layer, transfer_weights

NAME = "tiny.sklearn_digits"
SPEC = {
    "family": "gated_cnn",
    "name": "tiny",
    "filters": [4, 4, 8],
    "kernel_size": 3,
    "cell": "conv",
}
SHAPE = (8, 8, 1)


@pytest.fixture
def tiny_zoo(one_model_zoo):
    """`tiny.sklearn_digits` (untrained, 10 classes) as the only zoo model;
    returns the model."""
    model = models.build(SPEC, SHAPE, 10, name="tiny")
    one_model_zoo(model, NAME, SPEC, "sklearn_digits")
    return model


def body_weights(model):
    head = head_layer(model)
    return [w for layer in model.layers if layer is not head for w in layer.weights]


def test_load_with_a_new_head(tiny_zoo):
    model = zoo.load(NAME, num_classes=4)
    assert model.output.shape == (None, 4) and head_layer(model).name == "logits"
    ours, theirs = body_weights(model), body_weights(tiny_zoo)
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).random((2, *SHAPE)).astype("f4")
    assert model.predict(x, verbose=0).shape == (2, 4)
    same = zoo.load(NAME, num_classes=10)  # the model's own: as trained
    np.testing.assert_array_equal(
        same.predict(x, verbose=0), tiny_zoo.predict(x, verbose=0)
    )
    with pytest.raises(ValueError, match="`num_classes` must be >= 2"):
        zoo.load(NAME, num_classes=1)


def test_architectures_that_differ_are_named(tiny_zoo):
    wider = models.build({**SPEC, "filters": [4, 6, 8]}, SHAPE, 3, name="wider")
    with pytest.raises(ValueError, match=r"do not match: layer 1 .*'conv2'"):
        transfer_weights(tiny_zoo, wider)
    gated = models.build("gated_cnn", SHAPE, 3)
    with pytest.raises(ValueError, match="`--init-from tiny.sklearn_digits`: The"):
        init_from_zoo(gated, NAME)
    inputs = keras.Input((3,))
    no_head = keras.Model(inputs, keras.layers.ReLU()(inputs), name="plain")
    with pytest.raises(ValueError, match="does not end in a Dense classifier"):
        head_layer(no_head)


def test_init_from_copies_all_but_the_head(tiny_zoo):
    model = models.build(SPEC, (16, 16, 1), 5, name="target")  # other input size
    head = head_layer(model).get_weights()
    record = init_from_zoo(model, NAME)
    assert record == {
        "name": NAME,
        "sha256": zoo.info(NAME)["files"]["keras"]["sha256"],
        "head": False,
    }
    for a, b in zip(body_weights(model), body_weights(tiny_zoo), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(head_layer(model).get_weights(), head, strict=True):
        np.testing.assert_array_equal(a, b)  # the fresh head is kept


def test_train_init_from_records_it_and_refuses_other_architectures(
    tiny_zoo, tmp_path, capsys
):
    spec_path = tmp_path / "tiny.json"
    spec_path.write_text(json.dumps(SPEC))
    argv = ["train", str(spec_path), "--dataset", "sklearn_digits", "--epochs", "1"]
    argv += ["--steps-per-epoch", "1", "--batch-size", "16"]
    argv += ["--output-dir", str(tmp_path / "runs"), "--init-from", NAME]
    assert main(argv) == 0
    capsys.readouterr()
    run = json.loads((tmp_path / "runs" / "tiny.sklearn_digits.json").read_text())
    assert run["recipe"]["init_from"]["name"] == NAME
    assert f"--init-from {NAME}" in run["recipe"]["command"]

    argv[1] = "gated_cnn"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"spzoo: error: `--init-from {NAME}`: The architectures")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs" / "gated_cnn.sklearn_digits.keras").exists()


def test_init_from_a_keras_file_keeps_the_head_of_the_same_classes(tiny_zoo, tmp_path):
    from spzoo.zoo import sha256_file

    path = tmp_path / "trained.keras"
    tiny_zoo.save(path)
    model = models.build(SPEC, SHAPE, 10, name="target")
    record = init_from_zoo(model, str(path))
    assert record == {"path": str(path), "sha256": sha256_file(path), "head": True}
    for a, b in zip(model.weights, tiny_zoo.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match=r"^`--init-from /no/such.keras`: no such"):
        init_from_zoo(model, "/no/such.keras")


def test_a_run_from_an_earlier_runs_file_keeps_its_history(tmp_path, capsys):
    spec_path = tmp_path / "tiny.json"
    spec_path.write_text(json.dumps(SPEC))
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    argv = ["train", str(spec_path), "--dataset", "sklearn_digits", "--epochs", "1"]
    argv += ["--steps-per-epoch", "1", "--batch-size", "16", "--no-tensorboard"]
    assert main([*argv, "--output-dir", str(first_dir)]) == 0
    first_model = first_dir / "tiny.sklearn_digits.keras"
    first = json.loads(first_model.with_suffix(".json").read_text())
    argv[5] = "2"  # two epochs from the second run on
    for n, folder in enumerate([second_dir, tmp_path / "third"]):
        source = first_model if n == 0 else second_dir / "tiny.sklearn_digits.keras"
        more = ["--output-dir", str(folder), "--init-from", str(source)]
        assert main([*argv, *more, "--lr", "0.001"]) == 0
    capsys.readouterr()
    second = json.loads((second_dir / "tiny.sklearn_digits.json").read_text())
    third = json.loads((tmp_path / "third" / "tiny.sklearn_digits.json").read_text())

    # The second run: the first is its one stage, its command comes first.
    [stage] = second["recipe"]["stages"]
    assert stage["command"] == first["recipe"]["command"]
    assert stage["train_seconds"] == first["train_seconds"]
    assert stage["eval_accuracy"] == first["eval_accuracy"]
    earlier, this = second["recipe"]["command"].split(" && ")
    assert earlier == f"{first['recipe']['command']} --output-dir {first_dir}"
    assert this.startswith("spzoo train") and f"--init-from {first_model}" in this
    assert second["train_seconds_total"] == pytest.approx(
        first["train_seconds"] + second["train_seconds"], abs=0.1
    )
    # The third: both earlier runs, first run first; three commands chained.
    stages = third["recipe"]["stages"]
    assert [s["epochs"] for s in stages] == [1, 2]
    assert stages[1]["command"] == second["recipe"]["command"]
    assert "stages" not in stages[1]
    assert third["recipe"]["command"].count(" && ") == 2
    assert third["train_seconds_total"] == pytest.approx(
        second["train_seconds_total"] + third["train_seconds"], abs=0.1
    )
    assert third["train_seconds_note"].startswith("3 stages;")
