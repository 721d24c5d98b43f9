"""Slimmed models: gated-off channels physically removed at a fixed threshold.

Masking channels saves no time on dense hardware, so for cells whose gates
do not depend on the input (`InhibitionConv2D(input_dependent=False)`, no
post-synaptic path) `slim_model` rebuilds the network with only the open
channels. At threshold `t` a static cell's inference gate `g` (shape `C`,
`InhibitionConv2D.static_gate`) gives

```
keep = g > 0
W'[..., j] = g_j * W[:, :, in_keep, keep_j]      b'_j = g_j * b_j
```

a plain `Conv2D` with `n = sum(keep)` filters: the gate folds into the
weights because the cell's activation is positively homogeneous,
`g * relu(z) = relu(g * z)` for `g >= 0` (with gates of exactly 1 any
activation works). A removed channel is exactly zero, and stays zero
through zero-preserving layers (ReLU, pooling, dropout, flatten: see
`spzoo.metrics.gated`), so the next convolution or dense layer drops the
matching input channels (`in_keep`; after `Flatten`, the rows
`h * W * C + w * C + c` of the removed `c`). A cell whose output reaches
anything else (batch norm, an addition, the model output) keeps its width,
with the gate still folded into its weights (closed channels get zero
weights). The slim model computes the same logits as the gated model at
`t`, up to float rounding.
"""

import dataclasses

import keras
import numpy as np

from spzoo.layers.hard_concrete_gate import (
    check_threshold,
    get_threshold,
    set_threshold,
)
from spzoo.layers.inhibition_conv2d import InhibitionConv2D
from spzoo.metrics.counting import static_macs
from spzoo.metrics.gated import _keeps_zero_channels, gated_cells, gated_source

# Activations with f(g * z) = g * f(z) for g >= 0: a gate folds into the weights.
POSITIVELY_HOMOGENEOUS = frozenset({"relu", "linear", "leaky_relu"})
_LINEAR_CONSUMERS = (keras.layers.Conv2D, keras.layers.Dense, InhibitionConv2D)


@dataclasses.dataclass
class SlimReport:
    """What `slim_model` removed.

    Attributes:
        threshold: The fixed threshold.
        channels: `{cell name: [open, total]}` for every static cell (a
            slimmed cell computes `open` rounded up to `channel_multiple`).
        slimmed: Names of the cells whose closed channels were removed (the
            others keep their width with zero weights).
        macs_full: MACs per example of the gated model with every channel on.
        macs_slim: MACs per example of the slim model.
    """

    threshold: float
    channels: dict
    slimmed: list
    macs_full: int
    macs_slim: int

    @property
    def mac_fraction(self) -> float:
        return self.macs_slim / self.macs_full

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["mac_fraction"] = round(self.mac_fraction, 4)
        return out


def is_static(cell: InhibitionConv2D) -> bool:
    """Whether a cell's gates are the same for every input."""
    return cell.presynaptic and not cell.input_dependent and not cell.postsynaptic


def _downstream_ok(cell, model: keras.Model) -> bool:
    """Whether every path from `cell` through zero-preserving layers ends in
    a single-input Conv2D / Dense / InhibitionConv2D (not a model output)."""
    model_outputs = {id(t) for t in model.outputs}
    pending, seen = [cell], set()
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if id(layer.output) in model_outputs:
            return False
        for node in layer._outbound_nodes:
            consumer = node.operation
            if len(node.input_tensors) != 1:
                return False
            if isinstance(consumer, _LINEAR_CONSUMERS):
                continue
            if _keeps_zero_channels(consumer):
                pending.append(consumer)
                continue
            return False
    return True


def _fold_gate_ok(cell, gate) -> bool:
    name = keras.activations.serialize(cell.activation)
    open_gates = gate[gate > 0]
    return (isinstance(name, str) and name in POSITIVELY_HOMOGENEOUS) or bool(
        np.all(open_gates == 1.0)
    )


def _input_mask(layer, masks: dict, fan_in: int):
    """The kept input rows/channels of a linear consumer, or None."""
    source = gated_source(layer)
    if source is None or source.name not in masks:
        return None
    keep = masks[source.name]
    if fan_in % len(keep):
        raise ValueError(
            f"Layer {layer.name!r} has {fan_in} inputs, not a multiple of the "
            f"{len(keep)} channels of {source.name!r}."
        )
    return np.tile(keep, fan_in // len(keep))


def slim_model(
    model: keras.Model, threshold: float | None = None, channel_multiple: int = 1
) -> tuple[keras.Model, SlimReport]:
    """Returns `(slim, report)`: `model` at `threshold` with closed channels removed.

    Args:
        model: A functional Keras model with input-independent gated cells
            (`InhibitionConv2D(input_dependent=False)`) at its top level.
        threshold: Threshold on log-alpha; default the model's own.
        channel_multiple: Round each slimmed cell's width up to a multiple
            of this (closed channels kept with zero weights, so the result
            is unchanged): convolution kernels of CPU runtimes are blocked
            by 8 or 16 channels (ONNX Runtime's NCHWc layout, XNNPACK), and
            widths off the block fall off their fast path.

    Raises:
        ValueError: The model has no input-independent gated cells, or a
            cell's gate cannot be folded into its activation.
    """
    threshold = check_threshold(threshold)
    if not isinstance(channel_multiple, int) or channel_multiple < 1:
        raise ValueError(
            f"`channel_multiple` must be an int >= 1; received {channel_multiple!r}."
        )
    if threshold is None:
        threshold = get_threshold(model)
    if threshold is None:
        threshold = -np.inf
    cells = gated_cells(model)
    static = [c for c in cells if is_static(c)]
    if not static:
        raise ValueError(
            f"Model {model.name!r} has no input-independent gated cells "
            "(InhibitionConv2D with input_dependent=False and no post-synaptic "
            "path); a slimmed export needs them."
        )
    top = {id(layer) for layer in model.layers}
    nested = [c.name for c in cells if id(c) not in top]
    if nested:
        raise ValueError(
            f"Gated cells {nested} are inside nested models; `slim_model` "
            "needs them at the top level of a functional model."
        )
    gates, keeps, slimmed, channels = {}, {}, [], {}
    for cell in static:
        gate = cell.static_gate(threshold).astype(np.float32)
        if not _fold_gate_ok(cell, gate):
            raise ValueError(
                f"Cell {cell.name!r}: its activation "
                f"{keras.activations.serialize(cell.activation)!r} is not "
                f"positively homogeneous ({sorted(POSITIVELY_HOMOGENEOUS)}) "
                "and its open gates are not all 1, so the gate cannot be folded."
            )
        keep = gate > 0
        if _downstream_ok(cell, model):
            width = -(-max(int(keep.sum()), 1) // channel_multiple) * channel_multiple
            closed = np.flatnonzero(~keep)
            keep[closed[: min(width, len(keep)) - int(keep.sum())]] = True
            keeps[cell.name] = keep
            slimmed.append(cell.name)
        else:
            keep = np.ones_like(keep)
        gates[cell.name] = gate
        channels[cell.name] = [int((gate > 0).sum()), int(len(gate))]

    def clone(layer):
        config = layer.get_config()
        if layer.name in gates:
            return keras.layers.Conv2D(
                filters=int(
                    keeps[layer.name].sum() if layer.name in keeps else layer.filters
                ),
                kernel_size=layer.conv.kernel_size,
                strides=layer.conv.strides,
                padding=layer.conv.padding,
                dilation_rate=layer.conv.dilation_rate,
                activation=layer.activation,
                use_bias=layer.conv.use_bias,
                name=layer.name,
                dtype=layer.dtype_policy,
            )
        return layer.__class__.from_config(config)

    slim = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, slim.layers, strict=True):
        _copy_weights(old, new, gates, keeps)
    if any(not is_static(c) for c in cells):
        set_threshold(slim, None if np.isinf(threshold) else threshold)
    report = SlimReport(
        threshold=float(threshold),
        channels=channels,
        slimmed=slimmed,
        macs_full=static_macs(model),
        macs_slim=static_macs(slim),
    )
    return slim, report


def _copy_weights(old, new, gates: dict, keeps: dict) -> None:
    """Sets `new`'s weights from `old`'s, sliced and with gates folded."""
    if not old.weights:
        return
    if old.name in gates:
        kernel = np.asarray(old.conv.kernel)
        in_mask = _input_mask(old, keeps, kernel.shape[2])
        if in_mask is not None:
            kernel = kernel[:, :, in_mask, :]
        gate = gates[old.name]
        keep = keeps.get(old.name, np.ones(len(gate), bool))
        values = [kernel[..., keep] * gate[keep]]
        if old.conv.use_bias:
            values.append(np.asarray(old.conv.bias)[keep] * gate[keep])
        new.set_weights(values)
        return
    if isinstance(old, keras.layers.Dense | keras.layers.Conv2D):
        kernel = np.asarray(old.kernel)
        axis = 0 if isinstance(old, keras.layers.Dense) else 2
        in_mask = _input_mask(old, keeps, kernel.shape[axis])
        values = [np.asarray(w) for w in old.get_weights()]
        if in_mask is not None:
            values[0] = np.compress(in_mask, values[0], axis=axis)
        new.set_weights(values)
        return
    if isinstance(old, InhibitionConv2D):
        in_mask = _input_mask(old, keeps, old.conv.kernel.shape[2])
        values = []
        for variable in old.weights:
            value = np.asarray(variable)
            if in_mask is not None and variable is old.conv.kernel:
                value = value[:, :, in_mask, :]
            elif in_mask is not None and variable.name == "presynaptic_kernel":
                value = value[in_mask]
            values.append(value)
        new.set_weights(values)
        return
    new.set_weights(old.get_weights())
