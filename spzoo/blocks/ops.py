"""The Ops of Lee & Wang: k x k Op, None Op, mixed-kernel Op, reduction layer.

Every Op follows the paper's order, batch norm -> neuron layer -> k x k
convolution (Fig. 6a). Ops are functions on Keras tensors, in the style of
`keras.applications`: a model built from them is a plain functional model
whose every layer is visible (for parameter and MAC counts, pruning and
export).
"""

from keras import layers

from spzoo.blocks.conv import conv_cell
from spzoo.blocks.neurons import neuron_layer
from spzoo.layers import ChannelGate, split_channels

KERNEL_SIZES = (1, 3, 5, 7)


def batch_norm(name: str) -> layers.BatchNormalization:
    """Batch normalisation with moving-statistics momentum 0.9.

    Keras's default of 0.99 leaves the moving statistics near their initial
    values for the first few hundred steps, so short runs (searches, smoke
    tests) evaluate badly in inference mode; 0.9 is the common choice of
    ResNet recipes (PyTorch's 0.1 update rate).
    """
    return layers.BatchNormalization(momentum=0.9, name=name)


def check_kernel_fractions(kernel_fractions, argument="kernel_fractions") -> dict:
    """Validates `{kernel_size: fraction}` and returns it with int keys."""
    if not isinstance(kernel_fractions, dict) or not kernel_fractions:
        raise ValueError(
            f"`{argument}` must be a non-empty dict {{kernel_size: fraction}}; "
            f"received {kernel_fractions!r}."
        )
    parsed = {}
    for size, fraction in kernel_fractions.items():
        try:
            size_int = int(size)
        except (TypeError, ValueError):
            size_int = None
        if size_int not in KERNEL_SIZES:
            raise ValueError(
                f"`{argument}` has unknown kernel size {size!r}; expected one "
                f"of {KERNEL_SIZES}."
            )
        parsed[size_int] = float(fraction)
    split_channels(1, list(parsed.values()), argument=argument)
    return dict(sorted(parsed.items()))


def kxk_op(x, filters, kernel_size=3, neuron="relu", cell="conv", name="op"):
    """The k x k Op: BN -> neuron layer -> k x k convolution.

    Args:
        x: Input Keras tensor (NHWC).
        filters: Output channels.
        kernel_size: One of 1, 3, 5, 7.
        neuron: Neuron spec (see `spzoo.blocks.neurons.neuron_layer`).
        cell: Convolution cell spec (see `spzoo.blocks.conv.conv_cell`).
        name: Prefix of the layer names.
    """
    return mixed_kernel_op(x, filters, {kernel_size: 1.0}, neuron, cell, name)


def none_op(x):
    """The None Op: the identity, a shortcut from input to output."""
    return x


def mixed_kernel_op(
    x, filters, kernel_fractions, neuron="relu", cell="conv", name="op", gate=None
):
    """A k x k Op whose output channels are split over kernel sizes.

    BN -> neuron layer -> parallel convolutions of sizes 1/3/5/7, each with
    `round(fraction * filters)` output channels (largest-remainder rounding,
    kernel sizes with 0 channels are left out) -> concatenation. This is how
    the SP-ResNet's per-stack op percentages (e.g. 20% 1x1, 40% 3x3, 20%
    5x5, 20% 7x7) are realised inside one layer.

    Args:
        x: Input Keras tensor (NHWC).
        filters: Total output channels (>= 1).
        kernel_fractions: `{kernel_size: fraction}`, fractions summing to 1.
        neuron: Neuron spec.
        cell: Convolution cell spec.
        name: Prefix of the layer names.
        gate: A block gate's output `z` (see `spzoo.blocks.residual_block`):
            multiplied in between the neuron layer and the convolutions
            (`ChannelGate`, layer `{name}_gated`).
    """
    if int(filters) < 1:
        raise ValueError(f"`filters` must be >= 1; received {filters!r}.")
    fractions = check_kernel_fractions(kernel_fractions)
    counts = split_channels(int(filters), list(fractions.values()))
    x = batch_norm(f"{name}_bn")(x)
    x = neuron_layer(neuron, name=f"{name}_neuron")(x)
    if gate is not None:
        x = ChannelGate(name=f"{name}_gated")([x, gate])
    branches = [
        conv_cell(cell, count, size, name=f"{name}_conv{size}x{size}")(x)
        for size, count in zip(fractions, counts, strict=True)
        if count > 0
    ]
    if len(branches) == 1:
        return branches[0]
    return layers.Concatenate(name=f"{name}_concat")(branches)


def reduction_layer(x, filters, neuron="relu", cell="conv", name="reduction"):
    """The reduction layer: 3x3 conv, stride 2 -> BN -> neuron layer.

    Halves H and W; `filters` is usually twice the input channels.
    """
    x = conv_cell(cell, filters, 3, strides=2, name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return neuron_layer(neuron, name=f"{name}_neuron")(x)
