"""The small CNN of the inhibition-cell paper (3 conv + 1 FC), built from specs.

A `gated_cnn` spec is JSON data:

```json
{
  "family": "gated_cnn",
  "filters": [32, 64, 128],
  "kernel_size": 3,
  "cell": {"type": "inhibition", "presynaptic": true, "sparsity_weight": 0.02}
}
```

The network: conv1 (plain) -> ReLU -> 2x2 max pool -> conv2 (cell) -> ReLU
-> 2x2 max pool -> conv3 (cell) -> ReLU -> 2x2 max pool -> flatten -> a
dense layer of logits (no softmax). Convolutions 2 and 3 are built with
`conv_cell(spec["cell"], ...)`, `same`-padded with a bias and the ReLU
inside the cell, so a gated cell silences its channels after the ReLU and
the zeros reach the next layer (whose MACs then shrink too). With
`"cell": "conv"` the same network is the un-gated reference.
"""

import keras
from keras import layers

from spzoo.blocks.conv import conv_cell
from spzoo.models.checks import check_family, check_image_shape, check_num_classes
from spzoo.models.registry import register_family


def check(spec: dict) -> dict:
    """Validates a `gated_cnn` spec; returns a normalised deep copy."""
    spec = check_family(spec, "gated_cnn")
    filters = spec.get("filters", [32, 64, 128])
    if (
        not isinstance(filters, list)
        or len(filters) != 3
        or not all(isinstance(f, int) and f >= 1 for f in filters)
    ):
        raise ValueError(
            f"`spec['filters']` must be a list of 3 ints >= 1; received {filters!r}."
        )
    kernel_size = spec.get("kernel_size", 3)
    if not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(
            f"`spec['kernel_size']` must be an int >= 1; received {kernel_size!r}."
        )
    cell = spec.get("cell", "conv")
    if not (isinstance(cell, str) or (isinstance(cell, dict) and "type" in cell)):
        raise ValueError(
            "`spec['cell']` must be a cell name or a dict with a 'type'; "
            f"received {cell!r}."
        )
    spec.update(filters=filters, kernel_size=kernel_size, cell=cell)
    return spec


def _cell(cell, filters: int, kernel_size: int, name: str) -> layers.Layer:
    """A same-padded, biased convolution cell with the ReLU inside it."""
    options = dict(cell) if isinstance(cell, dict) else {"type": cell}
    if options["type"] == "conv":
        return layers.Conv2D(
            filters, kernel_size, padding="same", activation="relu", name=name
        )
    options.setdefault("activation", "relu")
    options.setdefault("use_bias", True)
    options.setdefault("kernel_initializer", "glorot_uniform")
    return conv_cell(options, filters, kernel_size, name=name)


def build(spec: dict, input_shape, num_classes: int, name=None) -> keras.Model:
    """Builds the paper's small CNN from a `gated_cnn` spec.

    Args:
        spec: A `gated_cnn` spec (see the module docstring).
        input_shape: `(H, W, C)` of one example (H, W >= 8).
        num_classes: Number of output logits (>= 2).
        name: Model name; defaults to `spec["name"]`.
    """
    spec = check(spec)
    input_shape = check_image_shape(input_shape)
    if min(input_shape[:2]) < 8:
        raise ValueError(
            f"`input_shape` must be at least 8x8 (three 2x2 poolings); "
            f"received {input_shape}."
        )
    check_num_classes(num_classes)
    f1, f2, f3 = spec["filters"]
    k = spec["kernel_size"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(f1, k, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _cell(spec["cell"], f2, k, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = _cell(spec["cell"], f3, k, name="conv3")(x)
    x = layers.MaxPooling2D(2, name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or spec.get("name", "gated_cnn"))


# The name `spzoo.models` exports.
build_gated_cnn = build

register_family("gated_cnn", build, check)
