"""bench/onnx_profile.py: the per-node profile and the aligned variants."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def onnx_profile(bench_script):
    return bench_script("onnx_profile")


def test_profile_groups_nodes_by_kind_with_their_macs(onnx_profile, tmp_path):
    proto = onnx_profile.conv_graph(cin=8, cout=16, k=3, side=6)
    x = np.random.default_rng(0).random((onnx_profile.BATCH, 8, 6, 6), np.float32)
    result = onnx_profile.profile(proto, x, runs=2, work=tmp_path, label="tiny")
    kinds = {row["kind"]: row for row in result["kinds"]}
    conv = kinds["Conv dense 3x3 + Relu, 16 out"]
    assert conv["nodes"] == 1
    assert conv["gflops"] > 0
    assert sum(row["share"] for row in result["kinds"]) == pytest.approx(1.0)
    assert result["total_ms"] == pytest.approx(sum(r["ms"] for r in result["kinds"]))


def test_aligned_variants_round_every_kernel_group_to_16_channels(onnx_profile):
    from spzoo.blocks.ops import check_kernel_fractions
    from spzoo.layers import split_channels

    for name, (_, stack1) in onnx_profile.VARIANTS.items():
        spec = onnx_profile.variant_spec(name, stack1)
        assert spec["name"] == name
        for stack in spec["stacks"]:
            fractions = check_kernel_fractions(stack["kernels"])
            counts = split_channels(stack["filters"], list(fractions.values()))
            assert all(c % 16 == 0 for c in counts), (name, stack, counts)
