"""Dynamic network pruning (DNP) of an NHN macro model.

NHN paper, Section 2.2 / 3 ("Network pruning"): after training the
SmoothInit model, the kernels of 3x3 and 5x5 convolutions whose standard
deviation falls below a threshold are removed (about 85% of them), then
every neuron left with no input or no output connection is removed, and the
pruned network is trained from scratch. For input neuron `i` and output
neuron `o` of a conv layer with kernel `W`:

    s[i, o] = std(W[:, :, i, o])          (over the k x k taps)
    m[i, o] = 1 if s[i, o] >= threshold else 0

A neuron `o` has no input when `m[i, o] = 0` for every live input `i`; a
neuron has no output when no consumer reads it (every kernel from it in
the next conv layer removed, and no skip, add-on, separable conv, merge or
head reading it). Removal repeats until nothing changes. 1x1 merges,
separable convs and the stem are not pruned (as the paper).

The "masked model" is the original architecture with the kernel masks and
a zero mask on removed neurons; the "pruned model" physically drops the
removed neurons (fewer channels) and keeps the kernel masks of the
survivors. With the same weights both compute the same function.
"""

import copy

import keras
import numpy as np

from spzoo.nhn.model import build
from spzoo.nhn.naming import layer_name, parse_addon_layer_name, parse_layer_name
from spzoo.nhn.spec import CONV_OPS


def _spaces(spec):
    """Channel spaces: the conv layer whose neurons index each tensor's channels.

    Returns `(op_space, out_space)`: per layer, the space of the op output
    and of the layer output; `None` is a dense `filters`-wide space.
    """
    op_space, out_space = [], []
    for i, layer in enumerate(spec["layers"]):
        previous = out_space[i - 1] if i else None
        if layer["op"] in CONV_OPS:
            op_space.append(i)
        elif layer["op"].startswith("sep"):
            op_space.append(None)
        else:
            op_space.append(previous)
        out_space.append(None if layer.get("skips") else op_space[i])
    return op_space, out_space


def kernel_std(model: keras.Model, spec: dict) -> dict:
    """`{layer index: s}`, `s[i, o] = std(W[:, :, i, o])` of each conv layer."""
    result = {}
    for i, layer in enumerate(spec["layers"]):
        if layer["op"] in CONV_OPS:
            w = keras.ops.convert_to_numpy(
                model.get_layer(layer_name(i, "conv")).kernel
            )
            result[i] = w.reshape(-1, *w.shape[2:]).std(axis=0)
    return result


def threshold_for_fraction(model: keras.Model, spec: dict, fraction: float) -> float:
    """The std threshold that removes `fraction` of all 3x3/5x5 kernels.

    Args:
        fraction: Share of kernels to remove, in [0, 1) (the paper: ~0.85).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"`fraction` must be in [0, 1); received {fraction!r}.")
    stds = kernel_std(model, spec)
    if not stds:
        raise ValueError("The spec has no 3x3/5x5 conv layer to prune.")
    values = np.concatenate([s.ravel() for s in stds.values()])
    return float(np.quantile(values, fraction)) if fraction > 0 else 0.0


def prune_spec(spec: dict, model: keras.Model, threshold: float) -> dict:
    """Computes DNP's kernel masks and surviving neurons.

    Args:
        spec: The NHN spec `model` was built from.
        model: The trained model.
        threshold: Kernels with std below it are removed (>= 0).

    Returns:
        `{"kernel_masks": {i: bool (C_in, C_out)}, "alive": {i: bool (C,)},
        "removed_kernels": int, "kernels": int}`, masks in the original
        (unpruned) channel spaces.
    """
    if not threshold >= 0:
        raise ValueError(f"`threshold` must be >= 0; received {threshold!r}.")
    layer_specs = spec["layers"]
    filters = int(spec.get("filters", 16))
    op_space, out_space = _spaces(spec)
    stds = kernel_std(model, spec)
    kmask = {}
    for i, s in stds.items():
        old = layer_specs[i].get("mask")
        kmask[i] = (s >= threshold) & (
            np.ones_like(s, bool) if old is None else np.asarray(old) > 0
        )
    removed_kernels = sum(int((~m).sum()) for m in kmask.values())
    alive = {i: np.ones(m.shape[1], bool) for i, m in kmask.items()}
    last = len(layer_specs) - 1
    skip_sources = {s for layer in layer_specs for s in layer.get("skips", [])}
    addon_sources = {a["from"] for a in spec.get("addons", [])}

    def live(space):
        return np.ones(filters, bool) if space is None else alive[space]

    changed = True
    while changed:
        changed = False
        used = {c: np.zeros_like(a) for c, a in alive.items()}
        for i, layer in enumerate(layer_specs):
            if layer.get("skips") and op_space[i] is not None:
                used[op_space[i]][:] = True
            c = out_space[i]
            if c is None:
                continue
            if i == last or i in skip_sources or i in addon_sources:
                used[c][:] = True
            elif layer_specs[i + 1]["op"] in CONV_OPS:
                used[c] |= (kmask[i + 1] & alive[i + 1][None, :]).any(axis=1)
            elif layer_specs[i + 1]["op"].startswith("sep"):
                used[c][:] = True
        for i in alive:
            in_live = live(out_space[i - 1] if i else None)
            has_input = (kmask[i] & in_live[:, None]).any(axis=0)
            new = alive[i] & has_input & used[i]
            if not new.any():  # keep one neuron so the layer exists
                new = np.zeros_like(new)
                new[int(np.argmax(stds[i].sum(axis=0)))] = True
            if (new != alive[i]).any():
                alive[i] = new
                changed = True
    for i in kmask:
        in_live = live(out_space[i - 1] if i else None)
        kmask[i] = kmask[i] & in_live[:, None] & alive[i][None, :]
    return {
        "kernel_masks": kmask,
        "alive": alive,
        "removed_kernels": removed_kernels,
        "kernels": sum(m.size for m in kmask.values()),
    }


def masked_spec(spec: dict, result: dict) -> dict:
    """The original architecture with DNP's kernel and neuron masks."""
    out = copy.deepcopy(spec)
    for i, m in result["kernel_masks"].items():
        out["layers"][i]["mask"] = m.astype(int).tolist()
        out["layers"][i]["neuron_mask"] = result["alive"][i].astype(int).tolist()
    return out


def _index(spec, result, space):
    if space is None:
        return np.arange(int(spec.get("filters", 16)))
    return np.flatnonzero(result["alive"][space])


def pruned_spec(spec: dict, result: dict) -> dict:
    """The physically smaller architecture: removed neurons dropped."""
    _, out_space = _spaces(spec)
    out = copy.deepcopy(spec)
    for i, m in result["kernel_masks"].items():
        rows = _index(spec, result, out_space[i - 1] if i else None)
        cols = _index(spec, result, i)
        out["layers"][i]["channels"] = len(cols)
        out["layers"][i]["mask"] = m[np.ix_(rows, cols)].astype(int).tolist()
        out["layers"][i].pop("neuron_mask", None)
    out["name"] = f"{spec.get('name', 'nhn')}_dnp"
    return out


def _mask(layer):
    return keras.ops.convert_to_numpy(layer.connection_mask)


def transfer_weights(
    source: keras.Model, target: keras.Model, spec: dict, result: dict
) -> None:
    """Copies `source`'s weights (original spaces) into the pruned `target`."""
    layer_specs = spec["layers"]
    op_space, out_space = _spaces(spec)
    widths = {
        i: len(result["alive"][i]) for i in result["alive"]
    }  # original neuron counts
    filters = int(spec.get("filters", 16))

    def idx(space):
        return _index(spec, result, space)

    def width(space):
        return filters if space is None else widths[space]

    for layer in target.layers:
        if not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        if not weights:
            continue
        name = layer.name
        addon = parse_addon_layer_name(name)
        parsed = parse_layer_name(name)
        if parsed is not None:
            i, part = parsed
            rows = idx(out_space[i - 1] if i else None)
            if part == "conv":
                cols = idx(i)
                weights = [weights[0][:, :, rows][..., cols], _mask(layer)]
            elif part == "bn" and layer_specs[i]["op"] in CONV_OPS:
                weights = [w[idx(i)] for w in weights]
            elif part == "sep":
                weights = [w[:, :, rows, :] for w in weights]
            elif part == "merge":
                sources = [op_space[i]] + [
                    out_space[s] for s in layer_specs[i]["skips"]
                ]
                offset, keep = 0, []
                for space in sources:
                    keep.append(offset + idx(space))
                    offset += width(space)
                weights = [weights[0][:, :, np.concatenate(keep), :]]
        elif addon is not None:
            a, b, _ = addon
            rows, cols = idx(out_space[a]), idx(out_space[b])
            weights = [weights[0][:, :, rows][..., cols], _mask(layer)]
        elif name == "head_pool":
            weights = [weights[0][..., idx(out_space[-1])]]
        elif name == "head_dense":
            weights = [weights[0][idx(out_space[-1])], weights[1]]
        layer.set_weights(weights)


def prune(model: keras.Model, spec: dict, threshold: float, input_shape, num_classes):
    """DNP of a trained NHN model.

    Args:
        model: Trained model built from `spec`.
        spec: Its NHN spec.
        threshold: Kernel std threshold.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.

    Returns:
        `(pruned_spec, pruned_model, masked_spec, result)`: the pruned model
        carries the trained weights of the survivors (train it from scratch
        by rebuilding from `pruned_spec`).
    """
    result = prune_spec(spec, model, threshold)
    small = pruned_spec(spec, result)
    pruned = build(small, input_shape, num_classes)
    transfer_weights(model, pruned, spec, result)
    return small, pruned, masked_spec(spec, result), result


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies weights layer by layer (same names and shapes), keeping the
    target's connection masks (e.g. into the masked model of `prune`)."""
    for layer in target.layers:
        if not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        if hasattr(layer, "connection_mask"):
            weights[1] = _mask(layer)
        layer.set_weights(weights)
