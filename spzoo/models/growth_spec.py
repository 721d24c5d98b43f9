"""The growth spec: what a growth network is, as JSON data (Lee & Wang, Figs. 4, 5).

A growth network is an initial 3x3 convolution, three stacks of `N_B`
*search blocks* each followed by a reduction layer, then global average
pooling and a classifier. Stack `s` (0-based) works at `N_F * 2**s`
channels. Every search block maps `c` channels to `c` channels and is a
path graph written as JSON data, a *node*:

- an op name, `"1x1"`, `"3x3"`, `"5x5"`, `"7x7"` (BN -> trainable neuron
  layer -> k x k convolution, Fig. 6a) or `"none"` (the identity);
- `{"seq": [a, b]}`: `b` applied to the output of `a` (a deeper path);
- `{"concat": [a, b]}`: the input channels split into two groups
  (`ceil(c / 2)` and `floor(c / 2)`), `a` on the first, `b` on the second,
  outputs concatenated;
- `{"add": [a, b]}`: `a` and `b` on the same input, outputs summed.

```json
{"family": "growth", "filters": 16, "blocks_per_stack": 3,
 "neuron": {"type": "trainable", "weight_scale": 10.0},
 "stacks": [["3x3", "3x3", "3x3"], ["3x3", ...], ["3x3", ...]]}
```

The search over these specs (growth procedures, aging evolution) is in
`spzoo.tuners.growth_space` and `spzoo.tuners.growth_oracle`.
"""

import copy
import json

OPS = ("1x1", "3x3", "5x5", "7x7", "none")
CONV_OPS = ("1x1", "3x3", "5x5", "7x7")
NUM_STACKS = 3
NUM_REDUCTIONS = 3


def kernel_size(op: str) -> int:
    """The kernel size of a conv op name, e.g. `kernel_size("5x5") == 5`."""
    if op not in CONV_OPS:
        raise ValueError(f"`op` must be one of {CONV_OPS}; received {op!r}.")
    return int(op.split("x")[0])


def check_node(node, where: str = "node") -> None:
    """Raises `ValueError` naming `where` if `node` is not a valid block node."""
    if isinstance(node, str):
        if node not in OPS:
            raise ValueError(f"`{where}` op must be one of {OPS}; received {node!r}.")
        return
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(
            f"`{where}` must be an op name or a dict with one key 'seq', 'concat' "
            f"or 'add'; received {node!r}."
        )
    ((kind, children),) = node.items()
    if kind not in ("seq", "concat", "add"):
        raise ValueError(
            f"`{where}` has unknown key {kind!r}; expected 'seq', 'concat' or 'add'."
        )
    if not isinstance(children, list) or len(children) != 2:
        raise ValueError(f"`{where}['{kind}']` must be a list of two nodes.")
    for i, child in enumerate(children):
        check_node(child, f"{where}['{kind}'][{i}]")


def stack_filters(spec: dict) -> list:
    """Channels of each stack: `N_F * 2**s`."""
    return [spec["filters"] * 2**s for s in range(len(spec["stacks"]))]


def check(spec) -> dict:
    """Validates a growth spec (see the module docstring); returns a deep copy."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as error:
            raise ValueError(f"`spec` is not valid JSON: {error}.") from None
    if not isinstance(spec, dict):
        raise ValueError(f"`spec` must be a dict; received {type(spec).__name__}.")
    spec = copy.deepcopy(spec)
    if spec.get("family", "growth") != "growth":
        raise ValueError(
            f"`spec['family']` must be 'growth'; got {spec.get('family')!r}."
        )
    spec.setdefault("family", "growth")
    for key in ("filters", "blocks_per_stack"):
        value = spec.get(key)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`spec['{key}']` must be an int >= 1; got {value!r}.")
    stacks = spec.get("stacks")
    if not isinstance(stacks, list) or len(stacks) != NUM_STACKS:
        raise ValueError(f"`spec['stacks']` must be a list of {NUM_STACKS} stacks.")
    for s, blocks in enumerate(stacks):
        if not isinstance(blocks, list) or len(blocks) != spec["blocks_per_stack"]:
            raise ValueError(
                f"`spec['stacks'][{s}]` must be a list of "
                f"{spec['blocks_per_stack']} blocks (blocks_per_stack)."
            )
        for b, block in enumerate(blocks):
            check_node(block, f"spec['stacks'][{s}][{b}]")
    spec.setdefault("neuron", {"type": "trainable", "weight_scale": 10.0})
    return spec


def check_input_shape(input_shape) -> tuple:
    """Raises if an input is too small for the three stride-2 reductions."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels); received {input_shape}."
        )
    smallest = 2**NUM_REDUCTIONS
    if any(d is not None and d < smallest for d in input_shape[:2]):
        raise ValueError(
            f"`input_shape` {input_shape} is too small for the growth network: "
            f"its three reduction layers (stride 2) need height and width >= "
            f"{smallest}."
        )
    return input_shape
