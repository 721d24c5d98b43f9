"""Fine-tuning from the zoo: a zoo model's weights under a new classifier head.

```python
from spzoo import zoo

model = zoo.load("resnet_3_48.fashion_mnist", num_classes=5)   # new head
```

`spzoo train ARCH --dataset D --init-from ZOO_NAME` builds `ARCH` for `D`
and starts from the zoo model's weights (`transfer_weights`). The head is
the `Dense` layer that gives the model's output; every other layer with
weights is matched to the zoo model's in order, by class and weight shapes,
so a different architecture, or a layer whose weights depend on the input
size, is an error naming the first layer that differs. A batch norm with
statistics per threshold level (`spzoo calibrate`) gives a plain batch norm
its shared `gamma` and `beta` and the statistics of level 0 (no threshold):
calibrate the fine-tuned model again for its other levels.
"""

import keras

from spzoo.layers.switchable_batch_norm import SwitchableBatchNormalization
from spzoo.models import build


def head_layer(model: keras.Model) -> keras.layers.Dense:
    """The `Dense` layer whose output is the model's output (the classifier).

    Raises:
        ValueError: The model's output does not come from a `Dense` layer.
    """
    layer = model.layers[-1]
    for candidate in model.layers:
        if any(out is model.outputs[0] for out in _outputs(candidate)):
            layer = candidate
    if not isinstance(layer, keras.layers.Dense):
        raise ValueError(
            f"Model {model.name!r} does not end in a Dense classifier (its output "
            f"comes from {layer.name!r}, a {type(layer).__name__}); a new head "
            "needs one."
        )
    return layer


def _outputs(layer) -> list:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return []
    return list(output) if isinstance(output, list | tuple) else [output]


def _body(model: keras.Model) -> list:
    """The model's layers that hold weights, without the head, in order."""
    head = head_layer(model)
    return [layer for layer in model.layers if layer.weights and layer is not head]


def _shapes(layer) -> list:
    return [tuple(w.shape) for w in layer.weights]


def _weights_for(source, target) -> list | None:
    """`source`'s weights in the form `target` takes, or None when the two
    layers differ: the same class and shapes, or a switchable batch norm
    into a plain one (its level-0 statistics)."""
    if type(source) is type(target) and _shapes(source) == _shapes(target):
        return source.get_weights()
    if isinstance(source, SwitchableBatchNormalization) and (
        type(target) is keras.layers.BatchNormalization
    ):
        weights = source.batch_norm_weights(row=0)
        if [w.shape for w in weights] == _shapes(target):
            return weights
    return None


def transfer_weights(
    source: keras.Model, target: keras.Model, source_name: str | None = None
) -> int:
    """Copies every weight of `source` but its head into `target`.

    Args:
        source: The trained model (e.g. a zoo model).
        target: A model of the same architecture, any number of classes.
        source_name: How errors name `source` (default: its name).

    Returns:
        The number of layers copied.

    Raises:
        ValueError: The architectures differ: another number of layers with
            weights, or a layer of another class or weight shapes (named).
    """
    name = source_name or source.name
    theirs, ours = _body(source), _body(target)
    weights = []
    for i, (a, b) in enumerate(zip(theirs, ours, strict=False)):
        weights.append(_weights_for(a, b))
        if weights[-1] is None:
            raise ValueError(
                f"The architectures of {name!r} and {target.name!r} do not match: "
                f"layer {i} with weights is {a.name!r} ({type(a).__name__}, "
                f"weights {_shapes(a)}) in {name!r} and {b.name!r} "
                f"({type(b).__name__}, weights {_shapes(b)}) in {target.name!r}."
            )
    if len(theirs) != len(ours):
        raise ValueError(
            f"The architectures of {name!r} and {target.name!r} do not match: "
            f"{len(theirs)} layers with weights besides the head in {name!r}, "
            f"{len(ours)} in {target.name!r}."
        )
    for values, b in zip(weights, ours, strict=True):
        b.set_weights(values)
    return len(ours)


def with_new_head(
    model: keras.Model, spec: dict, num_classes: int, name: str | None = None
) -> keras.Model:
    """`spec` built for `num_classes` classes (the input shape of `model`),
    with every weight of `model` but its head, which starts fresh (the gates'
    thresholds are weights: they come along)."""
    if int(num_classes) < 2:
        raise ValueError(f"`num_classes` must be >= 2; received {num_classes!r}.")
    input_shape = tuple(model.inputs[0].shape[1:])
    target = build(spec, input_shape, int(num_classes), name=name or model.name)
    transfer_weights(model, target)
    return target
