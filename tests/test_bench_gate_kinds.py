"""bench/gate_kinds.py: input-independent against input-dependent gates."""

import numpy as np
import pytest
from test_gated_fine_tuning import SPEC  # the tiny gated ResNet of these tests

import spzoo.models
from spzoo import metrics


@pytest.fixture(scope="module")
def gate_kinds(bench_script):
    return bench_script("gate_kinds")


@pytest.mark.parametrize("input_dependent", [False, True])
def test_threshold_at_finds_the_expected_macs(gate_kinds, input_dependent):
    spec = {**SPEC, "gate": {**SPEC["gate"], "input_dependent": input_dependent}}
    model = spzoo.models.build(spec, (8, 8, 1), 3)
    gate_kinds.spread_gates(model, seed=0)
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    full = metrics.macs(model, threshold=-np.inf, data=x)
    t = gate_kinds.threshold_at(model, x, 0.6 * full)
    assert metrics.macs(model, threshold=t, data=x) <= 0.6 * full
    # The bisection's other end is above the target: t is where it crosses.
    assert metrics.macs(model, threshold=t - 0.05, data=x) > 0.55 * full
    gates = [
        layer
        for layer in model.layers
        if isinstance(layer, spzoo.layers.PresynapticGate)
    ]
    for gate in gates:  # spread N(2, 2); a projection per example if dependent
        assert np.std(np.asarray(gate.presynaptic_bias)) > 0
        if input_dependent:
            assert np.abs(np.asarray(gate.presynaptic_kernel)).max() > 0


def test_report_names_both_kinds_and_their_speed_ups(gate_kinds):
    class Args:
        repeats = 3

    points = [
        {
            "kind": kind,
            "threshold": t,
            "of_sp_resnet": f,
            "latency_ms": ms,
            "speedup_b1": s1,
            "throughput": tp,
            "speedup_b64": s64,
            "parity": 1e-5,
        }
        for kind, t, f, ms, s1, tp, s64 in (
            ("input-independent", None, 0.98, 5.0, 1.0, 200.0, 1.0),
            ("input-independent", 2.5, 0.4, 3.0, 5 / 3, 320.0, 1.6),
            ("input-dependent", None, 0.97, 4.0, 1.0, 210.0, 1.0),
        )
    ]
    result = {
        "machine": "test machine",
        "load_average": 0.5,
        "sp_resnet_macs": 1000,
        "points": points,
    }
    text = gate_kinds.report_text(result, Args())
    assert "Machine: test machine." in text
    assert (
        "| input-independent | 2.500 | 40.0% | 3.00 | 1.67x | 320.0 | 1.60x |" in text
    )
    assert "| input-dependent | none | 97.0% | 4.00 | 1.00x |" in text
