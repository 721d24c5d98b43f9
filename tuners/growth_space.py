"""The growth NAS search space of Lee & Wang (Figs. 4 and 5).

The growth spec (search blocks as path graphs of ops, JSON data) is defined
in `spzoo.models.growth_spec`, which the model builder reads; this module
adds what the search needs: the structure of a block's graph and the
growth procedures.

The growth procedures (Fig. 5) act on one path (a leaf op `p` with `c`
channels):

- Branching: `p -> {"seq": [p, {"concat": [op1, op2]}]}`: the path's
  filters are divided into two groups, a random op on each, recombined by
  concatenation (depth + 1, legal when `c >= 2`);
- Splitting: `p -> {"add": [p, op]}`: a duplicate path with the same input
  and output and a random op (width + 1).

A whole architecture is JSON data, so a KerasTuner hyperparameter value (a
string) holds it (`GrowthSpace.to_json`).
"""

import copy
import dataclasses
import json
import math
import random

from spzoo.models.growth_spec import (
    CONV_OPS,
    NUM_REDUCTIONS,
    NUM_STACKS,
    OPS,
    check_input_shape,
    check_node,
    kernel_size,
    stack_filters,
)
from spzoo.models.growth_spec import check as check_growth_spec

__all__ = [
    "CONV_OPS",
    "NUM_REDUCTIONS",
    "NUM_STACKS",
    "OPS",
    "PROCEDURES",
    "GrowthSpace",
    "check_growth_spec",
    "check_input_shape",
    "check_node",
    "height",
    "kernel_size",
    "leaves",
    "level_widths",
    "num_ops",
    "op_counts",
    "replace",
    "spec_ops",
    "stack_filters",
    "width",
]

PROCEDURES = ("branching", "splitting")


def leaves(node, channels: int, address: tuple = ()):
    """Lists the leaf ops of a node as `(address, op, channels)` tuples.

    `address` is the tuple of child indices from the node to the leaf;
    `channels` is what the leaf maps (halved inside each `concat`).
    """
    if isinstance(node, str):
        return [(address, node, channels)]
    ((kind, children),) = node.items()
    if kind == "concat":
        groups = (math.ceil(channels / 2), channels // 2)
    else:
        groups = (channels, channels)
    found = []
    for i, (child, group) in enumerate(zip(children, groups, strict=True)):
        found.extend(leaves(child, group, address + (i,)))
    return found


def replace(node, address: tuple, new):
    """Returns a copy of `node` with the sub-node at `address` set to `new`."""
    if not address:
        return copy.deepcopy(new)
    ((kind, children),) = node.items()
    children = [copy.deepcopy(c) for c in children]
    children[address[0]] = replace(children[address[0]], address[1:], new)
    return {kind: children}


def num_ops(node) -> int:
    """Number of conv ops (None ops excluded) in a node or a list of nodes."""
    if isinstance(node, list):
        return sum(num_ops(n) for n in node)
    return sum(1 for _, op, _ in leaves(node, 1) if op != "none")


def spec_ops(spec: dict) -> int:
    """Number of conv ops in all search blocks of a growth spec."""
    return num_ops([block for blocks in spec["stacks"] for block in blocks])


def op_counts(node) -> dict:
    """`{op: count}` over the leaves of a node or list of nodes, all of `OPS`."""
    counts = dict.fromkeys(OPS, 0)
    for n in node if isinstance(node, list) else [node]:
        for _, op, _ in leaves(n, 1):
            counts[op] += 1
    return counts


def height(node) -> int:
    """Longest path (in conv ops) from the node's input to its output."""
    if isinstance(node, str):
        return 0 if node == "none" else 1
    ((kind, children),) = node.items()
    heights = [height(c) for c in children]
    return sum(heights) if kind == "seq" else max(heights)


def level_widths(node, channels: int, start: int = 0) -> dict:
    """Filters of the conv ops at each height level: `{level: filters}`.

    A conv op's level is the length of the longest path from the block
    input to its output (1 for an op on the input).
    """
    widths: dict = {}
    if isinstance(node, str):
        if node != "none":
            widths[start + 1] = channels
        return widths
    ((kind, children),) = node.items()
    if kind == "seq":
        parts = [
            level_widths(children[0], channels, start),
            level_widths(children[1], channels, start + height(children[0])),
        ]
    else:
        groups = (
            (math.ceil(channels / 2), channels // 2)
            if kind == "concat"
            else (channels, channels)
        )
        parts = [
            level_widths(c, g, start) for c, g in zip(children, groups, strict=True)
        ]
    for part in parts:
        for level, filters in part.items():
            widths[level] = widths.get(level, 0) + filters
    return widths


def width(node, channels: int) -> float:
    """Maximum filters at one height level, normalised by `channels`."""
    widths = level_widths(node, channels)
    return max(widths.values()) / channels if widths else 0.0


@dataclasses.dataclass(frozen=True)
class GrowthSpace:
    """The growth NAS search space and its growth procedures.

    Args:
        filters: N_F, the channels of the first stack (doubled per stack).
        blocks_per_stack: N_B, search blocks per stack.
        ops: Ops a growth step may add (default all five, None included).
        procedures: Growth procedures to use (`"branching"`, `"splitting"`).
        weight_scale: Factor on the trainable neuron layers' `w_TL` (the
            paper scales it by 10 during search).
    """

    filters: int = 16
    blocks_per_stack: int = 3
    ops: tuple = OPS
    procedures: tuple = PROCEDURES
    weight_scale: float = 10.0

    def __post_init__(self):
        if not isinstance(self.filters, int) or self.filters < 1:
            raise ValueError(
                f"`filters` must be an int >= 1; received {self.filters!r}."
            )
        if not isinstance(self.blocks_per_stack, int) or self.blocks_per_stack < 1:
            raise ValueError(
                "`blocks_per_stack` must be an int >= 1; received "
                f"{self.blocks_per_stack!r}."
            )
        ops = tuple(self.ops)
        if not ops or any(op not in OPS for op in ops):
            raise ValueError(
                f"`ops` must be a non-empty subset of {OPS}; received {ops!r}."
            )
        if not any(op in CONV_OPS for op in ops):
            raise ValueError(
                f"`ops` must hold at least one conv op of {CONV_OPS}; received {ops!r}."
            )
        procedures = tuple(self.procedures)
        if not procedures or any(p not in PROCEDURES for p in procedures):
            raise ValueError(
                f"`procedures` must be a non-empty subset of {PROCEDURES}; "
                f"received {procedures!r}."
            )
        if not self.weight_scale > 0:
            raise ValueError(
                f"`weight_scale` must be > 0; received {self.weight_scale!r}."
            )
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "procedures", procedures)
        if not self.legal_steps("3x3", self.filters):
            raise ValueError(
                f"The search space has no legal growth step: procedures "
                f"{procedures} on a 3x3 op with {self.filters} filters "
                "(Branching needs at least 2 filters per path)."
            )

    def neuron(self) -> dict:
        """The neuron spec of every op: a trainable neuron layer."""
        return {"type": "trainable", "weight_scale": float(self.weight_scale)}

    def initial_spec(self) -> dict:
        """The smallest network: a single 3x3 op in every search block."""
        return {
            "family": "growth",
            "name": "growth",
            "filters": self.filters,
            "blocks_per_stack": self.blocks_per_stack,
            "neuron": self.neuron(),
            "stacks": [["3x3"] * self.blocks_per_stack for _ in range(NUM_STACKS)],
        }

    def legal_steps(self, block, channels: int) -> list:
        """All legal growth steps of a block: `(procedure, address)` pairs."""
        steps = []
        for address, _, leaf_channels in leaves(block, channels):
            if "branching" in self.procedures and leaf_channels >= 2:
                steps.append(("branching", address))
            if "splitting" in self.procedures:
                steps.append(("splitting", address))
        return steps

    def grow_block(self, block, channels: int, rng: random.Random):
        """Applies one random growth procedure to a random path of a block."""
        steps = self.legal_steps(block, channels)
        if not steps:
            raise ValueError(
                f"No legal growth step left in block {json.dumps(block)} with "
                f"{channels} channels and procedures {self.procedures}."
            )
        procedure, address = steps[rng.randrange(len(steps))]
        leaf = next(op for a, op, _ in leaves(block, channels) if a == address)
        if procedure == "branching":
            new = {
                "seq": [leaf, {"concat": [rng.choice(self.ops), rng.choice(self.ops)]}]
            }
        else:
            new = {"add": [leaf, rng.choice(self.ops)]}
        return replace(block, address, new)

    def random_spec(self, rng: random.Random, max_growth: int) -> dict:
        """A random initial architecture (the paper's P_init).

        Each search block starts as a single 3x3 op and gets up to
        `max_growth` (N_G_init) random growth procedures.
        """
        if int(max_growth) < 0:
            raise ValueError(f"`max_growth` must be >= 0; received {max_growth!r}.")
        spec = self.initial_spec()
        for s, channels in enumerate(stack_filters(spec)):
            for b in range(self.blocks_per_stack):
                for _ in range(rng.randint(0, int(max_growth))):
                    spec["stacks"][s][b] = self.grow_block(
                        spec["stacks"][s][b], channels, rng
                    )
        return spec

    def grow(self, spec: dict, rng: random.Random, num_blocks: int, num_steps: int):
        """Grow(parent): `num_steps` procedures on each of `num_blocks` blocks.

        Args:
            spec: The parent's growth spec (not modified).
            rng: Random source.
            num_blocks: N_B_search, blocks chosen at random (without
                replacement) among all `3 * N_B` blocks.
            num_steps: N_G_search, growth procedures applied to each.

        Returns:
            The child's growth spec.
        """
        spec = self.check_spec(spec)
        total = NUM_STACKS * self.blocks_per_stack
        if not 1 <= int(num_blocks) <= total:
            raise ValueError(
                f"`num_blocks` must be in [1, {total}]; received {num_blocks!r}."
            )
        if int(num_steps) < 1:
            raise ValueError(f"`num_steps` must be >= 1; received {num_steps!r}.")
        channels = stack_filters(spec)
        for index in rng.sample(range(total), int(num_blocks)):
            s, b = divmod(index, self.blocks_per_stack)
            for _ in range(int(num_steps)):
                spec["stacks"][s][b] = self.grow_block(
                    spec["stacks"][s][b], channels[s], rng
                )
        return spec

    def check_spec(self, spec: dict) -> dict:
        """Validates a growth spec against this space; returns a deep copy."""
        spec = check_growth_spec(spec)
        if spec["blocks_per_stack"] != self.blocks_per_stack:
            raise ValueError(
                f"`spec['blocks_per_stack']` is {spec['blocks_per_stack']}; this "
                f"space has {self.blocks_per_stack}."
            )
        return spec

    def to_json(self, spec: dict) -> str:
        """The hyperparameter value of an architecture (compact JSON)."""
        return json.dumps(self.check_spec(spec), sort_keys=True, separators=(",", ":"))

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        config["ops"] = list(self.ops)
        config["procedures"] = list(self.procedures)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "GrowthSpace":
        return cls(**config)
