"""A large batch computed in chunks inside the ONNX graph.

ONNX Runtime runs a graph node by node over the whole batch. At batch 64 an
SP-ResNet activation of stack 1 (48 channels of 28 x 28) is 9.6 MB, far
beyond this machine's 1 MB of L2 cache per core, so each of its
memory-bound passes (the neuron's depthwise and element-wise nodes, the
column runs' reorders and `Col2Im`) streams it from L3 or memory. Run in
chunks of 8 examples, the same network computes batch 64 1.11x faster
(288 against 322 ms on this machine), the gated SP-ResNet 1.07x (gates
open) to 1.11x (30% of the MACs); ResNet 3-48, made of wide convolutions,
gains nothing (0.99x). Batch 1 runs the graph as it was
(`bench/results/batch_chunks.md`).

`in_chunks` wraps a graph so that a batch larger than `chunk` runs as an ONNX
`Loop` over chunks of `chunk` examples, and a smaller batch runs the graph as
it was (batch 1 pays one `If` and no `Loop`: 0.97x to 1.01x in that table,
within its noise):

```
n = Shape(image)[0]
If(n > chunk):  Loop(ceil(n / chunk)) over Slice(image, i * chunk, (i+1) * chunk),
                concatenating the outputs
else:           the graph
```

Each branch reads the main graph's weights through its own `Gather` of all
their rows, nodes on constants that ONNX Runtime folds into constants of
that branch when it loads the file, so the file holds each weight once (a
gated model's level sub-graphs keep their own small constants, indices and
biases, in both branches: its file is 18% larger, the SP-ResNet's 2%).
Read directly from the main graph, the weights were not folded into ONNX
Runtime's blocked layout inside the `Loop` (459 against 311 ms at batch 64
here), nor in the other branch once the `Loop` read them too (7.98 against
5.56 ms at batch 1). The logits are the same as the unchunked graph's (each
convolution sums in the same order per example).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Examples per chunk: the fastest of 4, 8 and 16 for the SP-ResNet at batch
# 64 on this machine (`bench/results/batch_chunks.md`: 292, 288 and 293 ms).
CHUNK = 8
PREFIX = "chunk/"
WHOLE = "whole/"


def _subgraphs(node):
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        yield from attribute.graphs


def _produced(graph, names: set) -> set:
    """The names of every value `graph`'s nodes produce, sub-graphs included."""
    for node in graph.node:
        names.update(v for v in node.output if v)
        for sub in _subgraphs(node):
            _produced(sub, names)
            names.update(v.name for v in sub.input)
    return names


def _local_names(graph, weights: dict, prefix: str) -> dict:
    """`{weight: local name}` for the initializers of rank 1 or more in
    `weights` that `graph` (or one of its sub-graphs) reads."""
    return {w: prefix + w for w in _inputs(graph) if w in weights and weights[w].dims}


def _rows(weight: onnx.TensorProto) -> str:
    """The name of the main graph's `arange(rows)` for `weight`'s rows."""
    return f"{PREFIX}rows{weight.dims[0]}"


def _reads(mapping: dict, weights: dict) -> list:
    """Nodes giving each weight in `mapping` its local name: a `Gather` of
    all its rows, which ONNX Runtime folds into a constant of the graph
    holding it."""
    nodes = []
    for w in sorted(set(mapping) & set(weights)):
        nodes.append(
            helper.make_node("Gather", [w, _rows(weights[w])], [mapping[w]], axis=0)
        )
    return nodes


def _renamed(graph, mapping: dict, prefix: str) -> None:
    """Renames, in place, every value of `graph` (and its sub-graphs) in
    `mapping` and puts `prefix` before each node name; drops the shapes
    (`value_info`), which `build_onnx` infers again."""
    for node in graph.node:
        node.input[:] = [mapping.get(v, v) for v in node.input]
        node.output[:] = [mapping.get(v, v) for v in node.output]
        if node.name:
            node.name = prefix + node.name
        for sub in _subgraphs(node):
            for value in (*sub.input, *sub.output):
                value.name = mapping.get(value.name, value.name)
            _renamed(sub, mapping, prefix)
    del graph.value_info[:]


def _constant(name: str, value) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)
    )


def in_chunks(
    graph: onnx.GraphProto, chunk: int, image: str, output: str
) -> onnx.GraphProto:
    """`graph` (input `image`, output `output` of shape `(batch, classes)`)
    computing batches larger than `chunk` in chunks of `chunk` examples."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"`chunk` must be a positive int; received {chunk!r}.")
    (out,) = [v for v in graph.output if v.name == output]
    classes = out.type.tensor_type.shape.dim[1].dim_value
    weights = {t.name: t for t in graph.initializer}

    # The graph as it was, for batches up to `chunk` (its own output name:
    # the main graph's is the `If`'s).
    whole = onnx.GraphProto()
    whole.node.extend(graph.node)
    mapping = {output: WHOLE + output}
    mapping.update(_local_names(whole, weights, WHOLE))
    _renamed(whole, mapping, WHOLE)
    plain = helper.make_graph(
        [*_reads(mapping, weights), *whole.node],
        "whole_batch",
        [],
        [
            helper.make_tensor_value_info(
                WHOLE + output, TensorProto.FLOAT, [None, classes]
            )
        ],
    )

    # The graph on one chunk, every value renamed.
    body = onnx.GraphProto()
    body.node.extend(graph.node)
    mapping = {v: PREFIX + v for v in _produced(body, set())}
    mapping.update(_local_names(body, weights, PREFIX))
    mapping[image] = PREFIX + image
    _renamed(body, mapping, PREFIX)
    read = _reads(mapping, weights)
    shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    i, cond, acc = PREFIX + "i", PREFIX + "cond", PREFIX + "logits_so_far"
    loop_body = helper.make_graph(
        [
            _constant(PREFIX + "size", np.array([chunk], np.int64)),
            _constant(PREFIX + "axis", np.array([0], np.int64)),
            _constant(PREFIX + "shape", np.array([-1, *shape], np.int64)),
            helper.make_node("Unsqueeze", [i, PREFIX + "axis"], [PREFIX + "i1"]),
            helper.make_node(
                "Mul", [PREFIX + "i1", PREFIX + "size"], [PREFIX + "start"]
            ),
            helper.make_node(
                "Add", [PREFIX + "start", PREFIX + "size"], [PREFIX + "stop"]
            ),
            helper.make_node(
                "Slice",
                [image, PREFIX + "start", PREFIX + "stop", PREFIX + "axis"],
                [PREFIX + "sliced"],
            ),
            # Restores the known height, width and channels (`Slice` with
            # run-time bounds leaves every dimension unknown).
            helper.make_node(
                "Reshape", [PREFIX + "sliced", PREFIX + "shape"], [PREFIX + image]
            ),
            *read,
            *body.node,
            helper.make_node("Identity", [cond], [PREFIX + "cond_out"]),
            helper.make_node(
                "Concat", [acc, PREFIX + output], [PREFIX + "logits_out"], axis=0
            ),
        ],
        "chunk_body",
        [
            helper.make_tensor_value_info(i, TensorProto.INT64, []),
            helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
            helper.make_tensor_value_info(acc, TensorProto.FLOAT, [None, classes]),
        ],
        [
            helper.make_tensor_value_info(PREFIX + "cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(
                PREFIX + "logits_out", TensorProto.FLOAT, [None, classes]
            ),
        ],
    )
    chunks = helper.make_graph(
        [
            _constant(PREFIX + "empty", np.zeros((0, classes), np.float32)),
            # An explicit condition: ONNX's reference evaluator runs no
            # iteration when it is omitted.
            _constant(PREFIX + "go", np.array(True)),
            helper.make_node(
                "Loop",
                [PREFIX + "trips", PREFIX + "go", PREFIX + "empty"],
                [PREFIX + "chunked"],
                body=loop_body,
            ),
        ],
        "chunked_batch",
        [],
        [
            helper.make_tensor_value_info(
                PREFIX + "chunked", TensorProto.FLOAT, [None, classes]
            )
        ],
    )
    top = [
        helper.make_node("Shape", [image], [PREFIX + "n"], start=0, end=1),
        _constant(PREFIX + "chunk", np.array([chunk], np.int64)),
        _constant(PREFIX + "chunk_less_1", np.array([chunk - 1], np.int64)),
        helper.make_node(
            "Add", [PREFIX + "n", PREFIX + "chunk_less_1"], [PREFIX + "n_up"]
        ),
        helper.make_node(
            "Div", [PREFIX + "n_up", PREFIX + "chunk"], [PREFIX + "trips1"]
        ),
        helper.make_node("Squeeze", [PREFIX + "trips1"], [PREFIX + "trips"]),
        helper.make_node(
            "Greater", [PREFIX + "n", PREFIX + "chunk"], [PREFIX + "large1"]
        ),
        helper.make_node("Squeeze", [PREFIX + "large1"], [PREFIX + "large"]),
        helper.make_node(
            "If", [PREFIX + "large"], [output], then_branch=chunks, else_branch=plain
        ),
    ]
    read = set(_local_names(graph, weights, ""))
    rows = sorted({weights[w].dims[0] for w in read})
    return helper.make_graph(
        top,
        graph.name,
        list(graph.input),
        list(graph.output),
        [
            *graph.initializer,
            *(
                numpy_helper.from_array(
                    np.arange(n, dtype=np.int64), f"{PREFIX}rows{n}"
                )
                for n in rows
            ),
        ],
    )


def _inputs(graph) -> set:
    """Every value name `graph`'s nodes read, sub-graphs included."""
    names = set()
    for node in graph.node:
        names.update(v for v in node.input if v)
        for sub in _subgraphs(node):
            names |= _inputs(sub)
    return names


def whole_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` as one network over the whole batch: the graph `in_chunks`
    wrapped, reading its weights directly (for tools that rewrite the main
    graph only, such as ONNX Runtime's quantizer); `model` itself when it is
    not chunked. The metadata is left as it is."""
    graph = model.graph
    outputs = {v.name for v in graph.output}
    chosen = [
        node
        for node in graph.node
        if node.op_type == "If"
        and node.input[0] == PREFIX + "large"
        and node.output[0] in outputs
    ]
    if not chosen:
        return model
    (node,) = chosen
    (branch,) = [a.g for a in node.attribute if a.name == "else_branch"]
    reads = {
        n.output[0]: n.input[0]
        for n in branch.node
        if n.op_type == "Gather" and n.input[1].startswith(PREFIX + "rows")
    }
    body = onnx.GraphProto()
    body.node.extend(n for n in branch.node if n.output[0] not in reads)
    _renamed(body, {**reads, WHOLE + node.output[0]: node.output[0]}, "")
    whole = onnx.ModelProto()
    whole.CopyFrom(model)
    whole.graph.CopyFrom(
        helper.make_graph(
            list(body.node),
            graph.name,
            list(graph.input),
            list(graph.output),
            [t for t in graph.initializer if not t.name.startswith(PREFIX + "rows")],
        )
    )
    return whole
