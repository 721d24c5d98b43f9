"""Parameter and multiply-accumulate (MAC) counts of Keras models."""

import math

import keras
from keras import layers


def count_params(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of parameters (all weights, or only trainable ones)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(w.shape) for w in weights))


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def layer_macs(layer) -> int:
    """MACs of one call of `layer` on one example (0 for element-wise layers).

    Convolutions count `H_out * W_out * k_h * k_w * (C_in / groups) * C_out`,
    depthwise convolutions `H_out * W_out * k_h * k_w * C_in * multiplier`,
    dense layers `in * out` per position. A layer may define its own count
    with a `macs()` method (gated cells do).
    """
    if hasattr(layer, "macs") and callable(layer.macs):
        return int(layer.macs())
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw, cin, mult = layer.kernel.shape
        return int(math.prod(layer.output.shape[1:3]) * kh * kw * cin * mult)
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        out = math.prod(layer.output.shape[1:3])
        return int(out * (kh * kw * cin * mult + cin * mult * layer.filters))
    if isinstance(layer, layers.Conv2D):
        kh, kw, cin_per_group, cout = layer.kernel.shape
        return int(math.prod(layer.output.shape[1:3]) * kh * kw * cin_per_group * cout)
    if isinstance(layer, layers.Dense):
        fan_in, units = layer.kernel.shape
        positions = (
            math.prod(layer.output.shape[1:-1]) if len(layer.output.shape) > 2 else 1
        )
        return int(positions * fan_in * units)
    return 0


def macs(model: keras.Model, threshold=None, data=None):
    """Multiply-accumulates of one forward pass on one example.

    Counts convolutions and dense layers (`layer_macs`); batch norm,
    activations and neuron layers are element-wise and not counted. The
    model must be built (a functional model always is).

    With `threshold` or `data`, returns instead the expected MACs per
    example (a float) of a model with gated cells on `data` at `threshold`,
    counting only the channels the gates let through, in the gated cells
    and in the following layers' inputs (see
    `spzoo.metrics.gated.expected_macs`).

    Args:
        model: A built Keras model.
        threshold: Threshold on log-alpha for every gate (None: as set).
        data: Examples to average over (arrays or a `tf.data.Dataset`).
    """
    if threshold is not None or data is not None:
        from spzoo.metrics.gated import expected_macs

        return expected_macs(model, threshold=threshold, data=data)
    return int(sum(layer_macs(layer) for layer in _flat_layers(model)))
