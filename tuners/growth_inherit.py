"""Weight inheritance in the growth NAS: a child starts from its parent's weights.

Lee & Wang's growth procedures come from path-level network transformation
(Cai et al. 2018, "Path-Level Network Transformation for Efficient
Architecture Search", the paper's reference [24]), whose transformations
are *function-preserving*: the transformed network starts from the trained
one and computes the same function before it trains again. This module
maps a parent's trained weights onto a child grown from it (Branching and
Splitting, `spzoo.tuners.growth_space`) and initialises the new paths so
the child computes its parent's function where the growth cells allow it.

The mapping is structural: growth only replaces leaves (a path `p`), and
keeps `p` as the first child of what replaces it (`{"seq": [p, ...]}`,
`{"add": [p, ...]}`), so walking the two specs side by side finds, for
every parent op, the child op it became (layer names follow node
addresses, `spzoo.models.growth`: `..._bn`, `..._neuron`, `..._convKxK`).
The stem, the reduction layers and the classifier keep their names.

New paths, in the spzoo cell (BN -> trainable neuron layer -> k x k
convolution without bias, Fig. 6a; `"none"` the identity):

- Splitting, `p -> {"add": [p, op]}`: add-merge with the merge weights
  split (1, 0), i.e. the new path's output zeroed (its convolution kernel
  zero; its BN and neuron layer fresh). Exact for every conv op. With the
  None op the new path is the identity and cannot be zeroed:
  `p(x) + x` is not `p(x)`, so that step is **not** function-preserving.
- Branching, `p -> {"seq": [p, {"concat": [op1, op2]}]}`: concat-merge
  whose two new ops must each be an identity on their channel group. The
  None op is one (exact). A conv op cannot be: its neuron layer sits on
  `p`'s raw output, which takes both signs, and no mixture of ReLU, max
  and coincidence neurons has slope 1 on both sides (`y = x * where(x > 0,
  linear + coincidence * g, -max * g)`, all gains >= 0); the convolution
  has no bias to undo a shift. Such an op gets an *identity-like*
  initialisation (Net2DeeperNet's identity convolution, a Dirac kernel,
  after a BN that is the identity in inference mode; its neuron layer the
  fresh equal mixture, as from scratch): **not** function-preserving.
- Paths made new in the same child and grown again (several growth steps
  on one block) are initialised recursively: `{"add": [a, b]}` as an
  identity takes whichever of `a`, `b` can be the identity and zeroes the
  other; zeroing a `seq` zeroes either of its parts.

Every other weight of the child is the parent's. The result of a child
(`plan_inheritance`, `inherit_weights`) says which steps are exact; the
growth tuner records it in the trial. Function preservation is meant in
inference mode (`training=False`): in training mode a BN normalises by
the batch, as it does in the parent.
"""

import dataclasses
import math

import keras
import numpy as np

from spzoo.models import growth
from spzoo.models.growth_spec import NUM_STACKS, check, kernel_size

__all__ = [
    "EXACT",
    "IDENTITY_LIKE",
    "InheritancePlan",
    "PARTIAL",
    "SCRATCH",
    "ZERO",
    "apply_inheritance",
    "inherit_weights",
    "plan_inheritance",
]

# How a child started (the trial record's "mode").
EXACT = "exact"  # inherited, computes the parent's function
PARTIAL = "partial"  # inherited, some new paths could not preserve it
SCRATCH = "scratch"  # fresh weights (a random initial model, or no parent weights)

# How a new conv op is initialised.
ZERO = "zero"
IDENTITY_LIKE = "identity-like"

_SUFFIX = {"seq": "s", "concat": "c", "add": "a"}


@dataclasses.dataclass
class InheritancePlan:
    """How a child's layers start, from its spec and its parent's.

    Attributes:
        copies: `{child op prefix: parent op prefix}` of the conv ops that
            keep their parent's weights (layer names `prefix + "_bn"`, ...).
        inits: `{child op prefix: (ZERO | IDENTITY_LIKE, op)}` of the new
            conv ops.
        steps: One record per growth step found: `{"procedure": "branching"
            | "splitting", "path": child node prefix, "new": the new
            node(s), "exact": bool}`.
    """

    copies: dict = dataclasses.field(default_factory=dict)
    inits: dict = dataclasses.field(default_factory=dict)
    steps: list = dataclasses.field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether every growth step is function-preserving."""
        return all(step["exact"] for step in self.steps)


def _children(node):
    ((kind, children),) = node.items()
    return kind, children


def _identity(node, name: str) -> tuple:
    """`(exact, inits)` making a new node the identity, or as close as it goes."""
    if isinstance(node, str):
        if node == "none":
            return True, {}
        return False, {name: (IDENTITY_LIKE, node)}
    kind, (a, b) = _children(node)
    s = _SUFFIX[kind]
    if kind == "add":
        options = []
        for keep, drop in ((0, 1), (1, 0)):
            kept = _identity((a, b)[keep], f"{name}{s}{keep}")
            dropped = _zero((a, b)[drop], f"{name}{s}{drop}")
            options.append((kept[0] and dropped[0], {**kept[1], **dropped[1]}))
        return options[0] if options[0][0] or not options[1][0] else options[1]
    exact_a, inits_a = _identity(a, f"{name}{s}0")
    exact_b, inits_b = _identity(b, f"{name}{s}1")
    return exact_a and exact_b, {**inits_a, **inits_b}


def _zero(node, name: str) -> tuple:
    """`(exact, inits)` making a new node output zeros.

    Every initialisation here maps zeros to zeros (a zero or Dirac kernel
    after a BN without shift), so a `seq` is zero when either part is.
    """
    if isinstance(node, str):
        if node == "none":
            return False, {}
        return True, {name: (ZERO, node)}
    kind, (a, b) = _children(node)
    s = _SUFFIX[kind]
    if kind == "seq":
        options = []
        for zeroed in (1, 0):
            z = _zero((a, b)[zeroed], f"{name}{s}{zeroed}")
            i = _identity((a, b)[1 - zeroed], f"{name}{s}{1 - zeroed}")
            options.append((z[0], {**i[1], **z[1]}))
        return options[0] if options[0][0] or not options[1][0] else options[1]
    exact_a, inits_a = _zero(a, f"{name}{s}0")
    exact_b, inits_b = _zero(b, f"{name}{s}1")
    return exact_a and exact_b, {**inits_a, **inits_b}


def _match(parent, child, parent_name: str, child_name: str, plan) -> None:
    """Walks a parent node and the child node grown from it."""
    if isinstance(parent, dict):
        kind, parent_children = _children(parent)
        if not isinstance(child, dict) or kind not in child:
            raise ValueError(
                f"The child is not grown from its parent: node {child_name!r} is "
                f"{child!r} where the parent has a {kind!r} node."
            )
        s = _SUFFIX[kind]
        for i, (p, c) in enumerate(zip(parent_children, child[kind], strict=True)):
            _match(p, c, f"{parent_name}{s}{i}", f"{child_name}{s}{i}", plan)
        return
    if child == parent:
        if parent != "none":
            plan.copies[child_name] = parent_name
        return
    if isinstance(child, dict):
        kind, (grown, new) = _children(child)
        if kind == "seq" and isinstance(new, dict) and "concat" in new:
            _match(parent, grown, parent_name, f"{child_name}s0", plan)
            exact, inits = _identity(new, f"{child_name}s1")
            plan.inits.update(inits)
            plan.steps.append(
                {
                    "procedure": "branching",
                    "path": child_name,
                    "new": new["concat"],
                    "exact": exact,
                }
            )
            return
        if kind == "add":
            _match(parent, grown, parent_name, f"{child_name}a0", plan)
            exact, inits = _zero(new, f"{child_name}a1")
            plan.inits.update(inits)
            plan.steps.append(
                {
                    "procedure": "splitting",
                    "path": child_name,
                    "new": new,
                    "exact": exact,
                }
            )
            return
    raise ValueError(
        f"The child is not grown from its parent: node {child_name!r} is {child!r} "
        f"where the parent has the op {parent!r} (growth keeps it first in a "
        "'seq' with a 'concat' or in an 'add')."
    )


def plan_inheritance(parent_spec, child_spec) -> InheritancePlan:
    """Maps a parent's conv ops onto a child grown from it (see the module).

    Args:
        parent_spec: The parent's growth spec (dict or JSON).
        child_spec: The child's, grown from it by Branching and Splitting.

    Returns:
        The `InheritancePlan`.

    Raises:
        ValueError: if the child is not a growth of the parent (other
            width, blocks, neuron, or a node that growth cannot produce).
    """
    parent, child = check(parent_spec), check(child_spec)
    for key in ("filters", "blocks_per_stack", "neuron"):
        if parent[key] != child[key]:
            raise ValueError(
                f"The child is not grown from its parent: `{key}` is "
                f"{child[key]!r}, the parent's {parent[key]!r}."
            )
    plan = InheritancePlan()
    for s in range(NUM_STACKS):
        for b, (p, c) in enumerate(
            zip(parent["stacks"][s], child["stacks"][s], strict=True), start=1
        ):
            name = f"stack{s + 1}_block{b}_"
            _match(p, c, name, name, plan)
    return plan


def _op_layers(prefix: str, op: str) -> tuple:
    k = kernel_size(op)
    return f"{prefix}_bn", f"{prefix}_neuron", f"{prefix}_conv{k}x{k}"


def _layer_map(plan: InheritancePlan, child_spec) -> dict:
    """`{child layer name: parent layer name}` of every inherited layer."""
    mapping = {}
    ops = _ops(check(child_spec))
    for child_prefix, parent_prefix in plan.copies.items():
        op = ops[child_prefix]
        for c, p in zip(
            _op_layers(child_prefix, op), _op_layers(parent_prefix, op), strict=True
        ):
            mapping[c] = p
    return mapping


def _ops(spec: dict) -> dict:
    """`{op prefix: op}` of every conv op of a spec."""
    found = {}

    def walk(node, name):
        if isinstance(node, str):
            if node != "none":
                found[name] = node
            return
        kind, children = _children(node)
        for i, c in enumerate(children):
            walk(c, f"{name}{_SUFFIX[kind]}{i}")

    for s, blocks in enumerate(spec["stacks"], start=1):
        for b, block in enumerate(blocks, start=1):
            walk(block, f"stack{s}_block{b}_")
    return found


def _block_layer_names(spec: dict) -> set:
    return {
        name for prefix, op in _ops(spec).items() for name in _op_layers(prefix, op)
    }


def _init_new_op(model: keras.Model, prefix: str, how: str, op: str) -> None:
    """Zero or identity-like initialisation of a new conv op (see the module)."""
    bn_name, _, conv_name = _op_layers(prefix, op)
    conv = model.get_layer(conv_name)
    (kernel,) = conv.get_weights()
    if how == ZERO:
        conv.set_weights([np.zeros_like(kernel)])
        return
    k, channels = kernel.shape[0], kernel.shape[-1]
    dirac = np.zeros_like(kernel)
    dirac[k // 2, k // 2] = np.eye(channels, dtype=kernel.dtype)
    conv.set_weights([dirac])
    bn = model.get_layer(bn_name)
    gamma, beta, mean, variance = bn.get_weights()
    # gamma * (x - mean) / sqrt(variance + epsilon) + beta == x.
    bn.set_weights(
        [
            np.sqrt(variance + bn.epsilon).astype(gamma.dtype),
            mean.astype(beta.dtype),
            mean,
            variance,
        ]
    )


def apply_inheritance(
    plan: InheritancePlan, parent: keras.Model, child_spec, child: keras.Model
) -> dict:
    """Copies a parent's weights into a child and initialises the new ops.

    Args:
        plan: From `plan_inheritance(parent_spec, child_spec)`.
        parent: The parent's model, its trained weights loaded.
        child_spec: The child's growth spec.
        child: The child's model (built from `child_spec`; changed in place).

    Returns:
        `{"mode": EXACT | PARTIAL, "steps": plan.steps, "copied_layers": n,
        "new_ops": {prefix: init}}`.
    """
    mapping = _layer_map(plan, child_spec)
    block_layers = _block_layer_names(check(child_spec))
    parent_names = {layer.name for layer in parent.layers}
    copied = 0
    for layer in child.layers:
        if not layer.weights:
            continue
        source = mapping.get(layer.name)
        if source is None and layer.name not in block_layers:
            source = layer.name  # stem, reductions, classifier: same names
        if source is None:
            continue
        if source not in parent_names:
            raise ValueError(
                f"The parent model has no layer {source!r} for the child's "
                f"{layer.name!r}; is it built from the parent's spec?"
            )
        layer.set_weights(parent.get_layer(source).get_weights())
        copied += 1
    for prefix, (how, op) in plan.inits.items():
        _init_new_op(child, prefix, how, op)
    return {
        "mode": EXACT if plan.exact else PARTIAL,
        "steps": plan.steps,
        "copied_layers": copied,
        "new_ops": {prefix: how for prefix, (how, _) in sorted(plan.inits.items())},
    }


def inherit_weights(
    parent_spec, parent_weights: str, child_spec, child: keras.Model
) -> dict:
    """Starts a child from its parent's trained weights file.

    Builds the parent from its spec (with the child's input shape and
    classes), loads `parent_weights` (a `.weights.h5` the growth tuner
    saved atomically, so never half-written) and applies
    `apply_inheritance`.

    Args:
        parent_spec: The parent's growth spec.
        parent_weights: Path of the parent's weights.
        child_spec: The child's growth spec.
        child: The child's model, built from `child_spec` (changed in place).

    Returns:
        The record of `apply_inheritance`.
    """
    plan = plan_inheritance(parent_spec, child_spec)
    parent = growth.build(
        parent_spec, tuple(child.inputs[0].shape[1:]), int(child.outputs[0].shape[-1])
    )
    parent.load_weights(parent_weights)
    return apply_inheritance(plan, parent, child_spec, child)


def inherited_schedule(steps: int, epochs: int, fraction: float) -> tuple:
    """`(steps, epochs)` of a child that inherited: `fraction` of each, >= 1."""
    child_steps = max(1, math.ceil(steps * fraction))
    return child_steps, max(1, min(child_steps, round(epochs * fraction)))
