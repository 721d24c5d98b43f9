"""bench/table2.py: the scaled designs and the paired difference."""

import pytest


@pytest.fixture(scope="module")
def table2(bench_script):
    return bench_script("table2")


def test_one_third_width_is_resnet_3_16_and_sp_resnet_16_32_48(table2):
    assert [s["filters"] for s in table2.scaled_spec("resnet_3_48", 3)["stacks"]] == [
        16,
        32,
        64,
    ]
    sp = table2.scaled_spec("sp_resnet", 3)
    assert [s["filters"] for s in sp["stacks"]] == [16, 32, 48]
    assert sp["stem_filters"] == 16 and sp["name"] == "sp_resnet_w3"
    assert table2.label("resnet_3_48", table2.scaled_spec("resnet_3_48", 3)) == (
        "ResNet 3-16"
    )


def test_paired_difference_is_per_seed_with_its_spread(table2):
    def record(design, seed, accuracy):
        return {"design": design, "seed": seed, "eval_accuracy": accuracy}

    records = [
        record("resnet_3_48", 0, 0.90),
        record("resnet_3_48", 1, 0.92),
        record("resnet_3_48", 2, 0.91),
        record("sp_resnet", 0, 0.905),
        record("sp_resnet", 1, 0.925),
        record("sp_resnet", 2, 0.915),
    ]
    pair = table2.paired_difference(records)
    assert pair["seeds"] == [0, 1, 2]
    assert pair["differences"] == pytest.approx([0.5, 0.5, 0.5])
    assert pair["mean"] == pytest.approx(0.5)
    assert pair["sd"] == pytest.approx(0.0, abs=1e-9)
    # The seed-to-seed sd of either design is 1 point: a +0.5 mean is not
    # outside it, although every seed agrees (the interval excludes zero).
    assert pair["seed_spread"] == pytest.approx(1.0)
    assert not pair["outside_spread"]
    assert pair["ci_excludes_zero"]


def test_remeasure_takes_the_accuracy_of_the_saved_model(table2, tmp_path, monkeypatch):
    import json

    import keras
    import numpy as np

    from spzoo.zoo.evaluate import eval_arrays

    monkeypatch.setattr(table2, "RUN_DIR", tmp_path / "runs")
    monkeypatch.setitem(table2.OUT, "dir", tmp_path / "results")
    path = table2.model_path("resnet_3_48", 0, 5, "fast", 3)
    path.parent.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(path)
    x, y = eval_arrays("fashion_mnist")
    expected = float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))
    record = {
        "design": "resnet_3_48",
        "seed": 0,
        "epochs": 5,
        "recipe": {"name": "fast"},
        "width_divisor": 3,
        "eval_accuracy": 0.5,
    }
    absent = dict(record, seed=1)
    (updated,) = table2.remeasure([record, absent])
    assert updated["eval_accuracy"] == expected
    assert updated["eval_accuracy_in_training"] == 0.5
    written = tmp_path / "results/table2/resnet_3_48.seed0.json"
    written = json.loads(written.read_text())
    assert written["accuracy_from"] == "saved float32 model"
    assert written["eval_accuracy"] == expected
    assert absent["eval_accuracy"] == 0.5 and "accuracy_from" not in absent
    assert table2.remeasure([updated]) == []  # measured once
