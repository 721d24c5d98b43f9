"""bench/batch_chunks.py: a batch in chunks inside the ONNX file."""

import pytest

from spzoo import zoo


@pytest.fixture(scope="module")
def batch_chunks(bench_script):
    return bench_script("batch_chunks")


def test_level_near_picks_the_shipped_curve_point_nearest_the_fraction(
    batch_chunks,
):
    ungated = zoo.info("sp_resnet.fashion_mnist")["macs"]
    curve = zoo.info("gated_sp_resnet.fashion_mnist")["threshold"]["curve"]
    point = batch_chunks.level_near("gated_sp_resnet.fashion_mnist", 0.3)
    assert point in curve[1:]
    gaps = [abs(p["macs"] / ungated - 0.3) for p in curve[1:]]
    assert abs(point["macs"] / ungated - 0.3) == min(gaps)


def test_report_rows_give_the_chunk_speed_ups_and_ratios(batch_chunks):
    rows = [
        {
            "model": "sp_resnet.fashion_mnist",
            "threshold": t,
            "chunk": chunk,
            "batch64_ms": ms,
            "speedup_b64": s,
            "gflops": g,
            "of_resnet_3_48_unchunked": a,
            "of_resnet_3_48_same_chunk": b,
            "batch1_ms": 5.5,
            "speedup_b1": 1.0,
            "max_abs_diff": 0.0,
        }
        for t, chunk, ms, s, g, a, b in [
            (None, None, 340.0, 1.0, 170.0, 0.75, 0.75),
            (5.798776149749756, 8, 310.0, 1.097, 186.4, 0.823, 0.81),
        ]
    ]
    text = batch_chunks.report_text(
        {
            "machine": "test machine",
            "clock": "CPU time of the process",
            "rounds": 3,
            "load_average": 0.5,
            "rows": rows,
        }
    )
    assert "Machine: test machine." in text
    assert (
        "| sp_resnet.fashion_mnist | none | - | 340.0 | 1.00x | 170.0 | 75.0% |" in text
    )
    assert "| 5.798776 | 8 | 310.0 | 1.10x | 186.4 | 82.3% | 81.0% |" in text
