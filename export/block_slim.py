"""TensorFlow serving graphs whose block gates drop closed channels at run time.

For a model with input-independent block gates (`PresynapticGate`, see
`spzoo.blocks.residual_block(gate=...)`), `block_slim_function(model)`
returns `serve(image, threshold)` in which each gated block computes only
the channels open at the run-time `threshold`:

```
keep = (log_alpha >= threshold) & (estimator > 0)      (one vector per block)
idx = where(keep)                                      (at least one channel)
first conv branch k:  kernel[..., idx_k]               (its open outputs)
batch norm, neuron:   their per-channel parameters at idx (a switchable
                      batch norm: its statistics of the level in force)
gate product:         x * (estimator * keep)[idx]
second conv:          kernel[:, :, idx, :]             (its open inputs)
```

TensorFlow's convolutions take kernels of any run-time shape, so the work
follows the threshold in a SavedModel, with the same logits as the Keras
model (the estimator multiplies exactly as `ChannelGate` does). A
convolution branch whose gates are all closed keeps one channel,
multiplied by zero. ONNX gets the same effect from
`spzoo.export.onnx_builder`; TFLite stays masked (its converter keeps
`serve_threshold` of `spzoo.export.serving`).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from spzoo.export.rewrite import rewritten_serve, sliced_conv
from spzoo.layers.base_neuron import NeuronLayer
from spzoo.layers.neuron_response import _forward
from spzoo.layers.switchable_batch_norm import SwitchableBatchNormalization
from spzoo.metrics.gated import gate_blocks


def has_static_blocks(model) -> bool:
    """Whether `model` has input-independent block gates."""
    return any(b.gate.is_static for b in gate_blocks(model))


def _conv(layer, x, kernel):
    return sliced_conv(layer, x, kernel, layer.bias if layer.use_bias else None)


def block_slim_function(model: keras.Model, threshold_range=None):
    """`serve(image, threshold) -> {"logits"}` (see the module docstring);
    the threshold is clamped to `threshold_range` when given."""
    blocks = [b for b in gate_blocks(model) if b.gate.is_static]
    if not blocks:
        raise ValueError(f"Model {model.name!r} has no input-independent block gates.")
    role = {}  # layer name -> (kind, block, extra)
    for block in blocks:
        for conv, start, stop in block.outputs:
            role[conv.name] = ("first", block, (start, stop))
        for layer in block.path:
            if not (
                isinstance(
                    layer,
                    keras.layers.Concatenate
                    | NeuronLayer
                    | SwitchableBatchNormalization,
                )
                or type(layer) is keras.layers.BatchNormalization
            ):
                raise ValueError(
                    f"Layer {layer.name!r} between the convolutions of gate "
                    f"{block.gate.name!r} cannot be sliced."
                )
            role[layer.name] = ("path", block, None)
        role[block.product.name] = ("product", block, None)
        for conv in block.inputs:
            role[conv.name] = ("second", block, None)
    constants = {
        b.gate.name: (b.gate.static_log_alpha(), b.gate.static_gate(-np.inf))
        for b in blocks
    }

    def open_channels(block, threshold):
        log_alpha, estimator = constants[block.gate.name]
        keep = tf.logical_and(
            tf.greater_equal(log_alpha, threshold), tf.greater(estimator, 0.0)
        )
        # One channel of each branch always runs (multiplied by zero when
        # closed): TensorFlow's convolutions need at least one filter.
        first = np.zeros(len(log_alpha), bool)
        for _, start, stop in block.outputs:
            first[start + int(np.argmax(log_alpha[start:stop]))] = True
        forced = tf.constant(first)
        idx = tf.cast(tf.where(tf.logical_or(keep, forced))[:, 0], tf.int32)
        factor = tf.gather(estimator * tf.cast(keep, tf.float32), idx)
        return idx, factor

    def replacement(layer, state):
        if layer.name not in role:
            return layer
        kind, block, extra = role[layer.name]
        idx, factor = state[block.gate.name]
        if kind == "first":
            start, stop = extra
            local = tf.boolean_mask(idx - start, (idx >= start) & (idx < stop))

            def first(x, **kwargs):
                return _conv(layer, x, tf.gather(layer.kernel, local, axis=3))

            return first
        if kind == "second":

            def second(x, **kwargs):
                return _conv(layer, x, tf.gather(layer.kernel, idx, axis=2))

            return second
        if kind == "product":
            return lambda inputs, **kwargs: inputs[0] * factor
        if isinstance(layer, keras.layers.Concatenate):
            return lambda inputs, **kwargs: tf.concat(inputs, axis=-1)
        if isinstance(layer, NeuronLayer):
            gains = [
                tf.gather(tf.broadcast_to(g, [block.gate.filters]), idx)
                for g in layer.gains()
            ]
            return lambda x, **kwargs: _forward(x, *gains)[0]

        def batch_norm(x, **kwargs):
            mean, variance = layer.moving_mean, layer.moving_variance
            if isinstance(layer, SwitchableBatchNormalization):
                # The statistics of the level in force (`threshold_scope`).
                row = layer.level()
                mean, variance = tf.gather(mean, row), tf.gather(variance, row)
            return ops.batch_normalization(
                x,
                tf.gather(mean, idx),
                tf.gather(variance, idx),
                axis=-1,
                offset=tf.gather(layer.beta, idx) if layer.center else None,
                scale=tf.gather(layer.gamma, idx) if layer.scale else None,
                epsilon=layer.epsilon,
            )

        return batch_norm

    def state_of(threshold):
        return {b.gate.name: open_channels(b, threshold) for b in blocks}

    return rewritten_serve(model, state_of, replacement, threshold_range)
