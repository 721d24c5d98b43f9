"""The ResNet family of Lee & Wang (Fig. 8a, Table II), built from specs.

A ResNet spec is JSON data:

```json
{
  "family": "resnet",
  "stem_filters": 48,
  "cell": "conv",
  "stacks": [
    {"blocks": 3, "filters": 48, "kernels": {"3": 1.0}, "neuron": "relu"},
    {"blocks": 3, "filters": 96, "kernels": {"3": 1.0}, "neuron": "relu"},
    {"blocks": 3, "filters": 192, "kernels": {"3": 1.0}, "neuron": "relu"}
  ]
}
```

The network: an initial 3x3 convolution (`stem_filters`), then for each
stack `blocks` residual blocks (two Ops each, so a stack has `2 * blocks`
layers), with a reduction layer (3x3 conv stride 2 -> BN -> neuron) between
consecutive stacks that maps to the next stack's filters; then BN -> neuron
-> global average pooling -> a dense layer of logits (no softmax).

Optional, `"reductions"`: `"between_stacks"` (the default, two reductions
for three stacks: what Fig. 8a's text builds when the last stack feeds the
pooling directly) or `"after_every_stack"` (the paper's phrase "three
(residual block x N_B - reduction layer) stacks" read literally, as the
growth family does: a third reduction after the last stack, 3x3 stride 2 to
twice its filters, before the head). See docs/fidelity.md, row
"Reductions".

Optional, for pruned networks (the pruning NAS, `spzoo.tuners.pruning`): a
stack may carry `"inner_neurons"`, one `[relu, max, coincidence]` list of
neuron counts per block. Block `b` then has `sum(inner_neurons[b])` channels
between its two Ops (the first Op's convolution outputs that many, the
second Op's prunable neuron layer holds those neurons in that
composition), instead of `filters`. Only 3x3 stacks (`{"3": 1.0}`) take it.

Optional, for gated networks: `"gate"` at the top level (every stack) or in
a stack, a dict of `PresynapticGate` options (`{"input_dependent": false,
"sparsity_weight": 0.01}`; `{}` for the defaults): each residual block gets
an inhibition-cell gate on its inner channels (see
`spzoo.blocks.residual_block`), so the work of both its convolutions
follows the run-time threshold.
"""

import keras
from keras import layers

from spzoo.blocks import (
    batch_norm,
    check_kernel_fractions,
    check_neuron,
    conv_cell,
    mixed_kernel_op,
    reduction_layer,
    residual_block,
)
from spzoo.blocks.neurons import neuron_layer
from spzoo.blocks.residual import check_gate
from spzoo.layers import PresynapticGate
from spzoo.models.checks import check_family, check_image_shape, check_num_classes
from spzoo.models.registry import register_family

REDUCTIONS = ("between_stacks", "after_every_stack")


def resnet_spec(num_blocks: int = 3, filters: int = 48, neuron="relu") -> dict:
    """The spec of the paper's ResNet N_B-N_F baseline (e.g. 3-48).

    Three stacks of `num_blocks` residual blocks at `filters`, `2 *
    filters` and `4 * filters` channels, 3x3 Ops throughout.
    """
    return {
        "family": "resnet",
        "name": f"resnet_{num_blocks}_{filters}",
        "stem_filters": filters,
        "cell": "conv",
        "stacks": [
            {
                "blocks": num_blocks,
                "filters": filters * m,
                "kernels": {"3": 1.0},
                "neuron": neuron,
            }
            for m in (1, 2, 4)
        ],
    }


def check(spec: dict) -> dict:
    """Validates a ResNet spec; returns a normalised deep copy.

    Raises `ValueError` naming the offending key and what was expected.
    """
    spec = check_family(spec, "resnet", default="resnet")
    stacks = spec.get("stacks")
    if not isinstance(stacks, list) or not stacks:
        raise ValueError("`spec['stacks']` must be a non-empty list of stacks.")
    stem = spec.get("stem_filters", stacks[0].get("filters"))
    if not isinstance(stem, int) or stem < 1:
        raise ValueError(f"`spec['stem_filters']` must be an int >= 1; got {stem!r}.")
    spec["stem_filters"] = stem
    spec.setdefault("cell", "conv")
    if spec.get("reductions", REDUCTIONS[0]) not in REDUCTIONS:
        raise ValueError(
            f"`spec['reductions']` must be one of {REDUCTIONS}; received "
            f"{spec['reductions']!r}."
        )
    for i, stack in enumerate(stacks):
        where = f"spec['stacks'][{i}]"
        for key in ("blocks", "filters"):
            value = stack.get(key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{where}['{key}']` must be an int >= 1; got {value!r}."
                )
        stack.setdefault("kernels", {"3": 1.0})
        check_kernel_fractions(stack["kernels"], f"{where}['kernels']")
        stack.setdefault("neuron", "relu")
        check_neuron(stack["neuron"], f"{where}['neuron']")
        if "inner_neurons" in stack:
            _check_inner_neurons(stack, where)
        gate = stack.get("gate", spec.get("gate"))
        check_gate(gate, f"{where}['gate']" if "gate" in stack else "spec['gate']")
        if gate is not None and "inner_neurons" in stack:
            raise ValueError(
                f"`{where}` has both 'inner_neurons' and a 'gate'; gated blocks "
                "of pruned stacks are not supported."
            )
    return spec


def _check_inner_neurons(stack: dict, where: str) -> None:
    inner = stack["inner_neurons"]
    if not isinstance(inner, list) or len(inner) != stack["blocks"]:
        raise ValueError(
            f"`{where}['inner_neurons']` must be a list of {stack['blocks']} "
            f"[relu, max, coincidence] counts (one per block); received {inner!r}."
        )
    for b, counts in enumerate(inner):
        if (
            not isinstance(counts, list)
            or len(counts) != 3
            or any(not isinstance(c, int) or c < 0 for c in counts)
            or sum(counts) < 1
        ):
            raise ValueError(
                f"`{where}['inner_neurons'][{b}]` must be 3 non-negative ints "
                f"[relu, max, coincidence] with a sum >= 1; received {counts!r}."
            )
    if check_kernel_fractions(stack["kernels"]) != {3: 1.0}:
        raise ValueError(
            f"`{where}['inner_neurons']` needs 3x3 Ops (kernels {{'3': 1.0}}); "
            f"received kernels {stack['kernels']!r}."
        )


def _pruned_residual_block(x, filters, counts, neuron, cell, name):
    """A residual block with `sum(counts)` inner neurons of a fixed composition.

    The layer names match `spzoo.blocks.residual_block`, so weights of an
    unpruned model map onto it by name.
    """
    inner = sum(counts)
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = conv_cell("conv", filters, 1, name=f"{name}_shortcut")(x)
    y = mixed_kernel_op(x, inner, {3: 1.0}, neuron, cell, f"{name}_op1")
    composition = [c / inner for c in counts]
    y = mixed_kernel_op(y, filters, {3: 1.0}, composition, cell, f"{name}_op2")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def build(spec: dict, input_shape, num_classes: int, name=None) -> keras.Model:
    """Builds a functional Keras model from a ResNet spec.

    Args:
        spec: A ResNet spec (see the module docstring).
        input_shape: `(H, W, C)` of one example.
        num_classes: Number of output logits (>= 2).
        name: Model name; defaults to `spec["name"]`.
    """
    spec = check(spec)
    input_shape = check_image_shape(input_shape, allow_none=True)
    check_num_classes(num_classes)
    cell = spec["cell"]
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_cell("conv", spec["stem_filters"], 3, name="stem_conv")(inputs)
    stacks = spec["stacks"]
    for s, stack in enumerate(stacks, start=1):
        kernels = check_kernel_fractions(stack["kernels"])
        for b in range(1, stack["blocks"] + 1):
            if "inner_neurons" in stack:
                x = _pruned_residual_block(
                    x,
                    stack["filters"],
                    stack["inner_neurons"][b - 1],
                    stack["neuron"],
                    cell,
                    name=f"stack{s}_block{b}",
                )
                continue
            x = residual_block(
                x,
                stack["filters"],
                kernels,
                stack["neuron"],
                cell,
                name=f"stack{s}_block{b}",
                gate=stack.get("gate", spec.get("gate")),
            )
        if s < len(stacks) or spec.get("reductions") == "after_every_stack":
            x = reduction_layer(
                x,
                stacks[s]["filters"] if s < len(stacks) else 2 * stack["filters"],
                stack["neuron"],
                cell,
                name=f"stack{s}_reduction",
            )
    x = batch_norm("head_bn")(x)
    x = neuron_layer(stacks[-1]["neuron"], name="head_neuron")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name or spec.get("name", "resnet"))
    _scale_gate_costs(model)
    return model


def _scale_gate_costs(model) -> None:
    """Divides the MAC-weighted L0 losses of block gates by the network's
    MACs, so they add up to the expected fraction of its MACs."""
    # Here, not at the top: spzoo.metrics (its NHN score) imports
    # spzoo.nhn, whose recipe imports spzoo.training, which imports
    # spzoo.models.
    from spzoo.metrics import macs

    gates = [
        layer
        for layer in model.layers
        if isinstance(layer, PresynapticGate) and layer.costs is not None
    ]
    if gates:
        total = float(macs(model))
        for gate in gates:
            gate.cost_scale = total


# The names `spzoo.models` exports.
check_spec = check
build_resnet = build

register_family("resnet", build, check)
