"""Dynamic slimming: one graph whose threshold input removes channels at run time.

`slim_model` removes closed channels at one fixed threshold. This module
builds a serving function that does the same for every threshold, inside
the graph: for each input-independent cell that `slim_model` can slim, the
open channels at the run-time threshold `t` are

```
g = HardConcrete_det(log_alpha, t)          (shape C)
idx = nonzero(g > 0)                        (at least the largest gate)
W' = gather(gather(W, idx, axis=out) * g[idx], idx_in, axis=in)
```

and the convolution runs on the gathered kernel (`ops.conv` with a kernel
of run-time shape), so the MACs follow the threshold even on dense
hardware. The following convolution or dense layer gathers the same
channels from its input axis (`h * W * C + c` rows after `Flatten`).
Input-dependent cells stay masked (their threshold comes from the same
input through `threshold_scope`). In ONNX the gathers become `NonZero` /
`Gather` nodes and the convolutions take their weights as run-time inputs.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from spzoo.export.rewrite import rewritten_serve, sliced_conv
from spzoo.export.slim import _downstream_ok, _fold_gate_ok, is_static
from spzoo.layers.inhibition_conv2d import InhibitionConv2D
from spzoo.metrics.gated import gated_source


def _open_channels(cell, threshold):
    """`(idx, gate)`: the open channels' indices (int32) and all gates."""
    log_alpha = cell.log_alpha_scale * ops.cast(cell.log_alpha, "float32")
    gate = cell.presynaptic_gate.deterministic(log_alpha, threshold)
    keep = ops.logical_or(
        ops.greater(gate, 0.0),
        tf.equal(tf.range(cell.filters, dtype=tf.int64), tf.argmax(gate)),
    )
    idx = tf.cast(tf.where(keep)[:, 0], tf.int32)
    return idx, gate


def _input_rows(layer, open_idx: dict, fan_in: int):
    """Run-time indices of a consumer's kept inputs, or None."""
    source = gated_source(layer)
    if source is None or source.name not in open_idx:
        return None
    idx = open_idx[source.name]
    channels = source.filters
    positions = fan_in // channels
    rows = tf.range(positions)[:, None] * channels + idx[None, :]
    return tf.reshape(rows, [-1])


def dynamic_slim_function(model: keras.Model):
    """`serve(image, threshold) -> {"logits"}` with run-time channel removal.

    Raises `ValueError` when no cell can be slimmed (see `slim_model`).
    """
    cells = [
        layer
        for layer in model.layers
        if isinstance(layer, InhibitionConv2D) and is_static(layer)
    ]
    slimmable = [c for c in cells if _downstream_ok(c, model)]
    if not slimmable:
        raise ValueError(
            f"Model {model.name!r} has no input-independent gated cells that "
            "can be slimmed (see `spzoo.export.slim_model`)."
        )
    for cell in slimmable:
        name = keras.activations.serialize(cell.activation)
        if not _fold_gate_ok(cell, np.full(1, 0.5, np.float32)):
            raise ValueError(
                f"Cell {cell.name!r}: activation {name!r} does not let the gate "
                "fold into the weights."
            )
    names = {c.name for c in slimmable}

    def replacement(layer, state):
        open_idx, gates = state
        if layer.name in names:

            def cell_call(x, **kwargs):
                idx, gate = open_idx[layer.name], gates[layer.name]
                g = tf.gather(gate, idx)
                kernel = tf.gather(layer.conv.kernel, idx, axis=3) * g
                rows = _input_rows(layer, open_idx, layer.conv.kernel.shape[2])
                if rows is not None:
                    kernel = tf.gather(kernel, rows, axis=2)
                bias = None
                if layer.conv.use_bias:
                    bias = tf.gather(layer.conv.bias, idx) * g
                return layer.activation(sliced_conv(layer.conv, x, kernel, bias))

            return cell_call
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            axis = 0 if isinstance(layer, keras.layers.Dense) else 2
            rows = _input_rows(layer, open_idx, layer.kernel.shape[axis])
            if rows is None:
                return layer

            def consumer_call(x, **kwargs):
                kernel = tf.gather(layer.kernel, rows, axis=axis)
                bias = layer.bias if layer.use_bias else None
                if axis == 0:
                    y = ops.matmul(x, kernel)
                    y = y if bias is None else y + bias
                else:
                    y = sliced_conv(layer, x, kernel, bias)
                return layer.activation(y)

            return consumer_call
        if isinstance(layer, InhibitionConv2D) and gated_source(layer) is not None:
            if gated_source(layer).name in names:
                raise ValueError(
                    f"Cell {layer.name!r} follows a slimmed cell; dynamic "
                    "slimming of a gated consumer is not supported."
                )
        return layer

    def state_of(threshold):
        open_idx, gates = {}, {}
        for cell in slimmable:
            open_idx[cell.name], gates[cell.name] = _open_channels(cell, threshold)
        return open_idx, gates

    return rewritten_serve(model, state_of, replacement)
