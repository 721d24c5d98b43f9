"""bench/train_throughput.py: lever configurations and one tiny run."""

import json

import pytest


@pytest.fixture(scope="module")
def bench(bench_script):
    return bench_script("train_throughput")


def test_model_specs_change_one_thing(bench):
    plain = bench.model_spec("resnet_3_48", "split", 1)
    prunable = bench.model_spec("resnet_3_48_prunable", "split", 1)
    assert [s["neuron"] for s in prunable["stacks"]] == ["prunable"] * 3
    assert [s["filters"] for s in prunable["stacks"]] == [
        s["filters"] for s in plain["stacks"]
    ]
    split = bench.model_spec("sp_resnet", "split", 1)
    assert split["stacks"][0]["kernels"] == {"1": 0.2, "3": 0.4, "5": 0.2, "7": 0.2}
    largest = bench.model_spec("sp_resnet", "largest", 1)
    assert [s["kernels"] for s in largest["stacks"]] == [
        {"7": 1.0},
        {"7": 1.0},
        {"3": 1.0},
    ]
    assert [s["neuron"] for s in largest["stacks"]] == [
        s["neuron"] for s in split["stacks"]
    ]
    three = bench.model_spec("sp_resnet", "3", 1)
    assert all(s["kernels"] == {"3": 1.0} for s in three["stacks"])
    assert [s["blocks"] for s in split["stacks"]] == [3, 4, 2]  # the design's
    one = bench.model_spec("sp_resnet", "split", 16, blocks=1)
    assert [s["blocks"] for s in one["stacks"]] == [1, 1, 1]
    assert [s["filters"] for s in one["stacks"]] == [3, 6, 9]


def test_every_model_lists_its_baseline_first(bench):
    for model in bench.MODELS:
        label, changes = bench.LEVERS[model][0]
        assert changes == {} and label.startswith("baseline")


def test_configurations_change_one_lever_each(bench):
    models = ["resnet_3_48", "sp_resnet"]
    configs = bench.configurations(models, steps=1, divisor=16, blocks=1)
    assert [(m, lever) for m, lever, _ in configs] == [
        (m, lever) for m in models for lever, _ in bench.LEVERS[m]
    ]
    for model, lever, config in configs:
        changes = dict(bench.LEVERS[model])[lever]
        assert config == dict(
            bench.BASELINE, **changes, model=model, steps=1, divisor=16, blocks=1
        )
    by_lever = {(m, lever): config for m, lever, config in configs}
    assert by_lever["sp_resnet", "float32"]["precision"] == "float32"
    assert by_lever["resnet_3_48", "oneDNN off"]["onednn"] is False
    quick = bench.configurations(models, steps=1, divisor=16, quick=True)
    assert [(m, lever) for m, lever, _ in quick] == [
        (m, lever) for m in models for lever in bench.QUICK_LEVERS
    ]
    assert all("blocks" not in config for _, _, config in quick)  # the design's


@pytest.mark.slow
def test_tiny_run_writes_ratios_to_each_models_baseline(bench, tmp_path, capsys):
    code = bench.main(
        [
            "--quick",
            "--models",
            "resnet_3_48",
            "sp_resnet",
            "--width-divisor",
            "16",
            "--blocks",
            "1",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "train_throughput.json").read_text())
    rows = result["rows"]
    assert [(r["model"], r["lever"]) for r in rows] == [
        (m, lever) for m in ("resnet_3_48", "sp_resnet") for lever in bench.QUICK_LEVERS
    ]
    for row in rows:
        assert row["best"] > 0
        assert row["images_per_second"] == pytest.approx(
            row["config"]["batch"] / row["best"]
        )
    assert [r["ratio"] for r in rows if r["lever"].startswith("baseline")] == [1.0, 1.0]
    for baseline, lever in (rows[0:2], rows[2:4]):  # each to its model's baseline
        assert lever["ratio"] == pytest.approx(
            lever["images_per_second"] / baseline["images_per_second"]
        )
    assert rows[1]["config"]["batch"] == 64 and rows[0]["config"]["batch"] == 128
    assert all(row["config"]["blocks"] == 1 for row in rows)
    table = (tmp_path / "train_throughput.md").read_text()
    assert "| sp_resnet | batch 64 |" in table and "Machine:" in table
    assert "--width-divisor 16 --blocks 1 --quick" in table
    assert "baseline resnet_3_48:" in capsys.readouterr().out


def test_bad_rounds_is_a_usage_error(bench):
    with pytest.raises(SystemExit) as error:
        bench.main(["--rounds", "0"])
    assert error.value.code == 2
    with pytest.raises(SystemExit) as error:
        bench.main(["--blocks", "0"])
    assert error.value.code == 2


@pytest.mark.slow
def test_input_pipeline_lever_times_each_step(bench):
    """The `input pipeline` lever trains through `model.fit` on the fast
    recipe's tf.data pipeline (a Keras callback times every step)."""
    config = dict(
        bench.BASELINE, input="pipeline", model="resnet_3_48", steps=2, divisor=16
    )
    config["blocks"] = 1
    times = bench.run_config(config)
    assert len(times) == 2 and all(t > 0 for t in times)
