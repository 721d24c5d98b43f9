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
