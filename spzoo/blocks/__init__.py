"""Ops and blocks built from the neuron layers."""

from spzoo.blocks.conv import conv_cell, register_conv_cell
from spzoo.blocks.gated import inhibition_cell
from spzoo.blocks.neurons import check_neuron, neuron_layer
from spzoo.blocks.ops import (
    KERNEL_SIZES,
    batch_norm,
    check_kernel_fractions,
    kxk_op,
    mixed_kernel_op,
    none_op,
    reduction_layer,
)
from spzoo.blocks.residual import residual_block

__all__ = [
    "KERNEL_SIZES",
    "batch_norm",
    "check_kernel_fractions",
    "check_neuron",
    "conv_cell",
    "inhibition_cell",
    "kxk_op",
    "mixed_kernel_op",
    "neuron_layer",
    "none_op",
    "reduction_layer",
    "register_conv_cell",
    "residual_block",
]
