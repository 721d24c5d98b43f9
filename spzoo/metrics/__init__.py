"""Metrics of models: parameters, MACs, scores."""

from spzoo.metrics.cost import macs
from spzoo.metrics.counting import count_params, layer_macs
from spzoo.metrics.gated import (
    expected_macs,
    format_threshold_table,
    measure,
    measure_at,
    plot_threshold_curve,
    threshold_curve,
)
from spzoo.metrics.nhn import nhn_score

__all__ = [
    "count_params",
    "expected_macs",
    "format_threshold_table",
    "layer_macs",
    "macs",
    "measure",
    "measure_at",
    "nhn_score",
    "plot_threshold_curve",
    "threshold_curve",
]
