"""Neuron surgery of the pruning NAS (Lee & Wang, Algorithm 2, Figs. 8, 9).

Importance, selection and removal of neurons; see `spzoo.tuners.pruning`
for which neurons go and how (physically or by mask).
"""

import keras
import numpy as np

from spzoo.layers.trainable_neuron_layer import NEURON_TYPES
from spzoo.models import build_resnet, check_spec, resnet_spec


def initial_spec(filters_per_type: int, blocks_per_stack: int = 3) -> dict:
    """The pruning NAS's starting ResNet (Fig. 8): PLs with equal thirds.

    Stack `s` has `3 * filters_per_type * 2**s` channels (the paper: N_F =
    16 per neuron type, 48 channels), every PL an equal share of each type.
    """
    spec = resnet_spec(blocks_per_stack, 3 * filters_per_type, neuron="prunable")
    spec["name"] = f"pruning_resnet_{blocks_per_stack}_{3 * filters_per_type}"
    for s, stack in enumerate(spec["stacks"]):
        count = filters_per_type * 2**s
        stack["inner_neurons"] = [[count] * 3 for _ in range(blocks_per_stack)]
    return spec


def inner_layers(spec: dict):
    """Yields `(stack, block, prefix)` of every prunable inner neuron layer."""
    for s, stack in enumerate(spec["stacks"], start=1):
        for b in range(1, stack["blocks"] + 1):
            yield s, b, f"stack{s}_block{b}"


IMPORTANCE = ("l2", "l2_fan_in")
SCOPES = ("inner", "all")


def check_scope(scope) -> str:
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}; received {scope!r}.")
    return scope


def masked_layers(model: keras.Model, spec: dict):
    """Yields `(key, layer, kernel)` of every PL outside the blocks' inner
    neurons, with the kernel whose output channels (last axis) are the
    weights of its neurons (see the module docstring)."""
    for _, _, prefix in inner_layers(spec):
        kernel = model.get_layer(f"{prefix}_op1_conv3x3").kernel
        yield f"{prefix}_op1_neuron", np.moveaxis(np.asarray(kernel), -2, -1)
    for s in range(1, len(spec["stacks"]) + 1):
        name = f"stack{s}_reduction"
        if any(layer.name == f"{name}_neuron" for layer in model.layers):
            yield f"{name}_neuron", np.asarray(model.get_layer(f"{name}_conv").kernel)
    yield "head_neuron", np.asarray(model.get_layer("logits").kernel).T


def importance(
    model: keras.Model, spec: dict, measure: str = "l2", scope: str = "inner"
) -> dict:
    """L2 importance and type of every prunable neuron.

    Args:
        model: A ResNet of the pruning search.
        spec: Its spec.
        measure: `"l2"`, the paper's `mean(W**2)`, or `"l2_fan_in"`, the
            same times the layer's fan-in (see
            `PrunableNeuronLayer.l2_importance`).
        scope: `"inner"`: the blocks' inner neurons (keys: block prefixes);
            `"all"`: also every other PL (keys: layer names, see
            `masked_layers`).

    Returns:
        `{key: (phi, types)}`: `phi` a NumPy array over the layer's
        neurons (0 where masked), `types` their neuron type names.
    """
    check_scope(scope)
    fan_in = measure == "l2_fan_in"
    found = {}
    for _, _, prefix in inner_layers(spec):
        layer = model.get_layer(f"{prefix}_op2_neuron")
        kernel = model.get_layer(f"{prefix}_op1_conv3x3").kernel
        phi = layer.l2_importance(kernel, fan_in_normalized=fan_in)
        found[prefix] = (phi, layer.neuron_types())
    if scope == "all":
        for key, kernel in masked_layers(model, spec):
            layer = model.get_layer(key)
            phi = layer.l2_importance(kernel, fan_in_normalized=fan_in)
            found[key] = (phi, layer.neuron_types())
    return found


def masked_channels(model: keras.Model, spec: dict) -> dict:
    """`{key: channels already removed}` of the PLs pruned by mask."""
    return {
        key: {int(c) for c in np.flatnonzero(np.asarray(layer.channel_mask) == 0)}
        for key, layer in (
            (key, model.get_layer(key)) for key, _ in masked_layers(model, spec)
        )
    }


def select_neurons(scores: dict, num_remove: int, exclude: dict | None = None) -> dict:
    """The `num_remove` lowest-importance neurons, each layer keeping one.

    Args:
        scores: `importance(...)` output.
        num_remove: N_R.
        exclude: `{key: channels}` already removed (`masked_channels`).

    Returns:
        `{key: sorted channel indices to remove}`.
    """
    exclude = exclude or {}
    candidates = sorted(
        (float(phi[c]), prefix, c)
        for prefix, (phi, _) in scores.items()
        for c in range(phi.size)
        if c not in exclude.get(prefix, ())
    )
    left = {
        prefix: phi.size - len(exclude.get(prefix, ()))
        for prefix, (phi, _) in scores.items()
    }
    chosen: dict = {}
    for _, prefix, c in candidates:
        if sum(len(v) for v in chosen.values()) == num_remove:
            break
        if left[prefix] > 1:
            chosen.setdefault(prefix, []).append(c)
            left[prefix] -= 1
    return {prefix: sorted(c) for prefix, c in chosen.items()}


def prune_network(model: keras.Model, spec: dict, input_shape, num_classes, remove):
    """Removes neurons physically: a smaller model with the kept weights.

    Args:
        model: A model built from `spec`.
        spec: Its ResNet spec (with `"inner_neurons"`).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        remove: `{prefix: channel indices}` (see `select_neurons`).

    Returns:
        `(new_model, new_spec)`.
    """
    spec = check_spec(spec)
    keep = {}
    for s, b, prefix in inner_layers(spec):
        layer = model.get_layer(f"{prefix}_op2_neuron")
        types = layer.neuron_types()
        gone = set(remove.get(prefix, []))
        kept = [c for c in range(len(types)) if c not in gone]
        keep[prefix] = np.asarray(kept)
        spec["stacks"][s - 1]["inner_neurons"][b - 1] = [
            sum(1 for c in kept if types[c] == t) for t in NEURON_TYPES
        ]
    new = build_resnet(spec, input_shape, num_classes, name=model.name)
    masked = {k: v for k, v in remove.items() if k not in keep}
    for layer in new.layers:
        if not layer.weights:
            continue
        old = model.get_layer(layer.name).get_weights()
        prefix = layer.name.rsplit("_op", 1)[0]
        values = []
        for source, target in zip(old, layer.get_weights(), strict=True):
            if source.shape != target.shape:
                axis = next(
                    i
                    for i, (a, b) in enumerate(
                        zip(source.shape, target.shape, strict=True)
                    )
                    if a != b
                )
                source = np.take(source, keep[prefix], axis=axis)
            values.append(source)
        layer.set_weights(values)
    for key, channels in masked.items():  # scope "all": by channel mask
        new.get_layer(key).prune(channels)
    return new, spec


def prune_step(
    parent: keras.Model,
    spec: dict,
    input_shape,
    num_classes: int,
    num_remove: int,
    measure: str = "l2",
    scope: str = "inner",
):
    """One pruning iteration before fine-tuning: score, choose, remove.

    Returns:
        `(model, spec, remove, scores)`: the pruned network, its spec, the
        channels removed `{key: channels}` and the parent's `importance`.
    """
    scores = importance(parent, spec, measure, scope)
    exclude = masked_channels(parent, spec) if scope == "all" else None
    remove = select_neurons(scores, num_remove, exclude)
    model, spec = prune_network(parent, spec, input_shape, num_classes, remove)
    return model, spec, remove, scores
