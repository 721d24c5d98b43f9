"""The residual block of Lee & Wang, Fig. 8b."""

from keras import layers

from spzoo.blocks.conv import conv_cell
from spzoo.blocks.ops import mixed_kernel_op


def residual_block(
    x,
    filters,
    kernel_fractions=None,
    neuron="relu",
    cell="conv",
    name="block",
):
    """Two Ops and a shortcut: `y = op2(op1(x)) + shortcut(x)`.

    Each Op is BN -> neuron layer -> convolution (3x3, or split over kernel
    sizes by `kernel_fractions`). The shortcut is the identity when the
    input already has `filters` channels, else a 1x1 convolution.

    Args:
        x: Input Keras tensor (NHWC).
        filters: Output channels.
        kernel_fractions: `{kernel_size: fraction}`; default `{3: 1.0}`.
        neuron: Neuron spec of both Ops.
        cell: Convolution cell spec of both Ops.
        name: Prefix of the layer names.
    """
    kernel_fractions = kernel_fractions or {3: 1.0}
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = conv_cell("conv", filters, 1, name=f"{name}_shortcut")(x)
    y = mixed_kernel_op(x, filters, kernel_fractions, neuron, cell, f"{name}_op1")
    y = mixed_kernel_op(y, filters, kernel_fractions, neuron, cell, f"{name}_op2")
    return layers.Add(name=f"{name}_add")([y, shortcut])
