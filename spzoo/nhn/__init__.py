"""Neuron hierarchical networks: masked convolutions, DNP, add-on neurons."""

from spzoo.nhn.dnp import (
    copy_weights,
    kernel_std,
    masked_spec,
    prune,
    prune_spec,
    pruned_spec,
    threshold_for_fraction,
    transfer_weights,
)
from spzoo.nhn.masked import ChannelMask, MaskedConv2D, effective_params

__all__ = [
    "copy_weights",
    "ChannelMask",
    "MaskedConv2D",
    "effective_params",
    "kernel_std",
    "masked_spec",
    "prune",
    "pruned_spec",
    "prune_spec",
    "threshold_for_fraction",
    "transfer_weights",
]
