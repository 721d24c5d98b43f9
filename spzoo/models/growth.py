"""The growth NAS network of Lee & Wang (Fig. 4), built from a growth spec.

The spec format (search blocks as path graphs of ops) is defined in
`spzoo.models.growth_spec`. The network: an initial 3x3 convolution with
`N_F` filters; three stacks of `N_B` search blocks at `N_F * 2**s`
channels, each stack followed by a reduction layer (3x3 conv stride 2 ->
BN -> neuron layer, doubling the channels); global average pooling; a dense
layer of logits. Layer names follow the node addresses, so the same spec
always builds the same model (KerasTuner's `load_model` relies on it).

```python
model = spzoo.models.build(spec, input_shape=(28, 28, 1), num_classes=10)
```
"""

import math

import keras
from keras import layers

from spzoo.blocks import conv_cell, kxk_op, reduction_layer
from spzoo.models.checks import check_num_classes
from spzoo.models.growth_spec import (
    check,
    check_input_shape,
    kernel_size,
    stack_filters,
)
from spzoo.models.registry import register_family

__all__ = ["build", "build_growth", "check"]


def _node(x, node, neuron, name):
    """Applies a search-block node to `x` (channels in == channels out)."""
    channels = x.shape[-1]
    if isinstance(node, str):
        if node == "none":
            return x
        return kxk_op(x, channels, kernel_size(node), neuron, name=name)
    ((kind, children),) = node.items()
    if kind == "seq":
        x = _node(x, children[0], neuron, f"{name}s0")
        return _node(x, children[1], neuron, f"{name}s1")
    if kind == "add":
        outputs = [_node(x, c, neuron, f"{name}a{i}") for i, c in enumerate(children)]
        return layers.Add(name=f"{name}add")(outputs)
    first = math.ceil(channels / 2)
    groups = [x[..., :first], x[..., first:]]
    outputs = [
        _node(g, c, neuron, f"{name}c{i}")
        for i, (g, c) in enumerate(zip(groups, children, strict=True))
    ]
    return layers.Concatenate(name=f"{name}concat")(outputs)


def build(spec, input_shape, num_classes: int, name=None) -> keras.Model:
    """Builds a functional Keras model from a growth spec.

    Args:
        spec: A growth spec (dict or JSON string).
        input_shape: `(H, W, C)`; H and W must be >= 8 (three reductions).
        num_classes: Number of output logits (>= 2).
        name: Model name; defaults to `spec["name"]`.
    """
    spec = check(spec)
    input_shape = check_input_shape(input_shape)
    check_num_classes(num_classes)
    neuron = spec["neuron"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_cell("conv", spec["filters"], 3, name="stem_conv")(inputs)
    for s, (blocks, filters) in enumerate(
        zip(spec["stacks"], stack_filters(spec), strict=True), start=1
    ):
        for b, block in enumerate(blocks, start=1):
            x = _node(x, block, neuron, f"stack{s}_block{b}_")
        x = reduction_layer(x, 2 * filters, neuron, name=f"stack{s}_reduction")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or spec.get("name", "growth"))


# The name `spzoo.models` exports (`spzoo.models.build_growth`).
build_growth = build

register_family("growth", build, check)
