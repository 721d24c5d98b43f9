"""The residual block of Lee & Wang, Fig. 8b, optionally with a block gate."""

from keras import layers

from spzoo.blocks.conv import conv_cell
from spzoo.blocks.neurons import neuron_layer
from spzoo.blocks.ops import batch_norm, check_kernel_fractions, mixed_kernel_op
from spzoo.layers import PresynapticGate, split_channels

GATE_OPTIONS = (
    "input_dependent",
    "sparsity_weight",
    "initial_log_alpha",
    "log_alpha_scale",
    "threshold",
    "gamma",
    "zeta",
    "beta",
    "seed",
    "mac_weighted",
)


def check_gate(gate, argument: str = "gate") -> dict | None:
    """Validates a block-gate spec (None, or a dict of `PresynapticGate`
    options); returns it as a dict or None."""
    if gate is None or gate is False:
        return None
    if gate is True:
        return {}
    if not isinstance(gate, dict):
        raise ValueError(
            f"`{argument}` must be None or a dict of gate options "
            f"{list(GATE_OPTIONS)}; received {gate!r}."
        )
    unknown = sorted(set(gate) - set(GATE_OPTIONS))
    if unknown:
        raise ValueError(
            f"`{argument}` has unknown options {unknown}; expected some of "
            f"{list(GATE_OPTIONS)}."
        )
    options = {k: v for k, v in gate.items() if k != "mac_weighted"}
    if not isinstance(gate.get("mac_weighted", False), bool):
        raise ValueError(
            f"`{argument}['mac_weighted']` must be true or false; received "
            f"{gate['mac_weighted']!r}."
        )
    try:
        PresynapticGate(1, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Invalid `{argument}`: {error}") from None
    return dict(gate)


def channel_costs(input_shape, filters, fractions, counts) -> list[float]:
    """MACs per example that each inner channel of a gated block costs: its
    output of the first convolution (`H * W * k^2 * C_in` for its branch's
    kernel `k`) plus its share of the second convolution's input
    (`H * W * sum_k(k^2 * C_k)`)."""
    height, width, cin = (int(d) for d in input_shape[1:])
    area = height * width
    second = area * sum(k * k * c for k, c in zip(fractions, counts, strict=True))
    costs = []
    for size, count in zip(fractions, counts, strict=True):
        costs += [float(area * size * size * cin + second)] * count
    if len(costs) != filters:
        raise ValueError(f"{len(costs)} channel costs for {filters} channels.")
    return costs


def residual_block(
    x,
    filters,
    kernel_fractions=None,
    neuron="relu",
    cell="conv",
    name="block",
    gate=None,
):
    """Two Ops and a shortcut: `y = op2(op1(x)) + shortcut(x)`.

    Each Op is BN -> neuron layer -> convolution (3x3, or split over kernel
    sizes by `kernel_fractions`). The shortcut is the identity when the
    input already has `filters` channels, else a 1x1 convolution.

    With `gate`, the block's inner channels (the first Op's output) are
    gated by inhibition-cell gates computed from the first convolution's
    input (pre-synaptic, before the convolution it gates), and applied
    after the second Op's batch norm and neuron layer, where a closed
    channel is exactly zero where the second convolution reads it:

    ```
    h = neuron1(bn1(x));  z = PresynapticGate(filters)(h)       # "{name}_gate"
    y = conv2(neuron2(bn2(conv1(h))) * z) + shortcut(x)         # "{name}_op2_gated"
    ```

    A closed channel costs neither its output of the first convolution nor
    its input of the second; the residual stream keeps its width.

    Args:
        x: Input Keras tensor (NHWC).
        filters: Output channels.
        kernel_fractions: `{kernel_size: fraction}`; default `{3: 1.0}`.
        neuron: Neuron spec of both Ops.
        cell: Convolution cell spec of both Ops.
        name: Prefix of the layer names.
        gate: None (no gate), or a dict of `PresynapticGate` options, e.g.
            `{"input_dependent": false, "sparsity_weight": 0.01}`, plus
            `"mac_weighted": true` to weight each gate's L0 loss by the MACs
            its channel costs (`channel_costs`; `spzoo.models` divides by
            the network's total MACs).
    """
    kernel_fractions = kernel_fractions or {3: 1.0}
    gate = check_gate(gate)
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = conv_cell("conv", filters, 1, name=f"{name}_shortcut")(x)
    if gate is None:
        y = mixed_kernel_op(x, filters, kernel_fractions, neuron, cell, f"{name}_op1")
        y = mixed_kernel_op(y, filters, kernel_fractions, neuron, cell, f"{name}_op2")
        return layers.Add(name=f"{name}_add")([y, shortcut])
    fractions = check_kernel_fractions(kernel_fractions)
    counts = split_channels(int(filters), list(fractions.values()))
    h = batch_norm(f"{name}_op1_bn")(x)
    h = neuron_layer(neuron, name=f"{name}_op1_neuron")(h)
    options = {k: v for k, v in gate.items() if k != "mac_weighted"}
    if gate.get("mac_weighted"):
        options["costs"] = channel_costs(x.shape, filters, fractions, counts)
    z = PresynapticGate(int(filters), name=f"{name}_gate", **options)(h)
    branches = [
        conv_cell(cell, count, size, name=f"{name}_op1_conv{size}x{size}")(h)
        for size, count in zip(fractions, counts, strict=True)
        if count > 0
    ]
    y = (
        branches[0]
        if len(branches) == 1
        else layers.Concatenate(name=f"{name}_op1_concat")(branches)
    )
    y = mixed_kernel_op(
        y, filters, kernel_fractions, neuron, cell, f"{name}_op2", gate=z
    )
    return layers.Add(name=f"{name}_add")([y, shortcut])
