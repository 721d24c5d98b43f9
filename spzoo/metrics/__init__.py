"""Metrics of models: parameters, MACs, scores."""

from spzoo.metrics.counting import count_params, layer_macs, macs

__all__ = ["count_params", "layer_macs", "macs"]
