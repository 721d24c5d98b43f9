"""Parameter and multiply-accumulate (MAC) counts of Keras models, as built.

The expected MACs of a gated model on data at a threshold are
`spzoo.metrics.gated.expected_macs`; `spzoo.metrics.macs` gives either.
"""

import math

import keras
from keras import layers


def count_params(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of parameters (all weights, or only trainable ones)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(w.shape) for w in weights))


def flat_layers(model: keras.Model):
    """The model's layers, those of nested models in their place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
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


def static_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass on one example, every
    channel computed: the sum of `layer_macs` over the model's layers
    (batch norm, activations and neuron layers are element-wise and not
    counted). The model must be built (a functional model always is)."""
    return int(sum(layer_macs(layer) for layer in flat_layers(model)))
