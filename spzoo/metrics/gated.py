"""Expected MACs of models with gated cells, measured on data at a threshold.

A gated cell (`InhibitionConv2D`) reports the MACs it needs per example
(`needed_macs`): only the channels whose pre-synaptic gate is open are
convolved. A channel that a cell gates to zero stays zero through
zero-preserving layers (ReLU-like activations, pooling, dropout, flatten),
so the next convolution or dense layer also skips that input channel:

```
MACs(layer, example) = f_in(example) * MACs(layer)
f_in = (non-zero output channels of the gated source) / (its channels)
```

Layers after anything else (batch norm, additions, concatenations) are
counted in full.

Block gates (`PresynapticGate` + `ChannelGate`, see
`spzoo.blocks.residual_block(gate=...)`) gate a block's inner channels
after its second batch norm and neuron layer, so with `n` of the `C`
channels open an example needs

```
MACs(first conv branch k) = (n_k / C_k) * MACs(branch k)   (its output channels)
MACs(second conv)         = (n / C) * MACs(second conv)     (its input channels)
```

where `n_k` counts the open channels among branch `k`'s `C_k` outputs.
"""

import dataclasses

import keras
import numpy as np
from keras import layers, ops

from spzoo.io import atomic_path
from spzoo.layers.base_neuron import NeuronLayer
from spzoo.layers.hard_concrete_gate import find_gates, set_threshold
from spzoo.layers.inhibition_conv2d import InhibitionConv2D
from spzoo.layers.presynaptic_gate import ChannelGate, PresynapticGate
from spzoo.layers.switchable_batch_norm import SwitchableBatchNormalization
from spzoo.metrics.counting import flat_layers, layer_macs

# Activations `f` with `f(0) = 0`: a zero channel stays zero through them.
ZERO_PRESERVING_ACTIVATIONS = frozenset(
    {
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "swish",
        "tanh",
        "mish",
        "softsign",
        "linear",
    }
)
_CHANNEL_PRESERVING = (
    layers.ReLU,
    layers.LeakyReLU,
    layers.ELU,
    layers.Dropout,
    layers.SpatialDropout2D,
    layers.MaxPooling2D,
    layers.AveragePooling2D,
    layers.GlobalAveragePooling2D,
    layers.GlobalMaxPooling2D,
    layers.Flatten,
)


def _keeps_zero_channels(layer) -> bool:
    if isinstance(layer, _CHANNEL_PRESERVING):
        return not (
            isinstance(layer, layers.Flatten) and layer.data_format == "channels_first"
        )
    if isinstance(layer, layers.Activation):
        name = keras.activations.serialize(layer.activation)
        return isinstance(name, str) and name in ZERO_PRESERVING_ACTIVATIONS
    return False


def _producer(layer):
    """The layer that produced `layer`'s single input, or None."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    history = getattr(nodes[0].input_tensors[0], "_keras_history", None)
    return None if history is None else history.operation


def gated_source(layer) -> InhibitionConv2D | None:
    """The gated cell whose zero channels reach `layer`'s input, if any."""
    producer = _producer(layer)
    while producer is not None and _keeps_zero_channels(producer):
        producer = _producer(producer)
    return producer if isinstance(producer, InhibitionConv2D) else None


@dataclasses.dataclass
class GateBlock:
    """The convolutions whose work one `PresynapticGate` controls.

    Attributes:
        gate: The `PresynapticGate`.
        product: The `ChannelGate` that multiplies by the gate.
        outputs: `(conv, start, stop)`: convolutions computing the gated
            channels `[start, stop)` (the first convolution's branches).
        inputs: Convolutions reading the gated channels (the second
            convolution's branches).
        path: The per-channel layers between the first convolutions and
            the product (batch norm, neuron layers, concatenation), in
            order from the product backwards.
    """

    gate: PresynapticGate
    product: ChannelGate
    outputs: list
    inputs: list
    path: list


def _is_per_channel(layer) -> bool:
    """Whether `layer` maps each channel on its own (batch norm, neurons)."""
    return isinstance(
        layer, layers.BatchNormalization | SwitchableBatchNormalization | NeuronLayer
    ) or _keeps_zero_channels(layer)


def _history(tensor):
    return getattr(tensor, "_keras_history", None)


def gate_blocks(model: keras.Model) -> list[GateBlock]:
    """The `GateBlock` of every `PresynapticGate` of a functional model.

    Raises `ValueError` when a gate is not wired as
    `spzoo.blocks.residual_block(gate=...)` wires it (conv branches ->
    per-channel layers -> `ChannelGate` <- gate; product -> convolutions).
    """
    blocks = []
    for gate in (
        layer for layer in flat_layers(model) if isinstance(layer, PresynapticGate)
    ):
        products = [
            node.operation
            for node in gate._outbound_nodes
            if isinstance(node.operation, ChannelGate)
        ]
        if len(products) != 1 or len(gate._outbound_nodes) != 1:
            raise ValueError(
                f"Gate {gate.name!r} must feed exactly one ChannelGate; it feeds "
                f"{[n.operation.name for n in gate._outbound_nodes]}."
            )
        product = products[0]
        node = product._inbound_nodes[0]
        if _history(node.input_tensors[1]).operation is not gate:
            raise ValueError(
                f"ChannelGate {product.name!r} must take `[x, z]` with `z` from "
                f"gate {gate.name!r}."
            )
        path, outputs = [], []
        layer = _history(node.input_tensors[0]).operation
        while _is_per_channel(layer):
            path.append(layer)
            layer = _producer(layer)
        if isinstance(layer, layers.Concatenate):
            path.append(layer)
            start = 0
            for tensor in layer._inbound_nodes[0].input_tensors:
                conv = _history(tensor).operation
                stop = start + int(tensor.shape[-1])
                outputs.append((conv, start, stop))
                start = stop
        else:
            outputs.append((layer, 0, gate.filters))
        consumers, pending = [], [product]
        while pending:
            current = pending.pop()
            for out in current._outbound_nodes:
                if isinstance(out.operation, layers.Conv2D):
                    consumers.append(out.operation)
                elif _keeps_zero_channels(out.operation):
                    pending.append(out.operation)
                else:
                    raise ValueError(
                        f"The output of {product.name!r} reaches "
                        f"{out.operation.name!r}; a gate block's product must "
                        "feed convolutions."
                    )
        bad = [
            conv.name
            for conv, _, _ in outputs
            if not isinstance(conv, layers.Conv2D) or isinstance(conv, InhibitionConv2D)
        ]
        if bad or not consumers:
            raise ValueError(
                f"Gate {gate.name!r}: the gated channels must come from Conv2D "
                f"layers (found {bad}) and reach Conv2D layers (found "
                f"{[c.name for c in consumers]})."
            )
        blocks.append(GateBlock(gate, product, outputs, consumers, path))
    return blocks


def gated_cells(model: keras.Model) -> list:
    """The `InhibitionConv2D` cells of a model (nested ones too)."""
    return [
        layer for layer in flat_layers(model) if isinstance(layer, InhibitionConv2D)
    ]


def _batches(data, batch_size: int):
    """Yields `(x, y)` NumPy batches (`y` None without labels)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    elif isinstance(data, np.ndarray):
        x, y = data, None
    else:
        for batch in data:
            if isinstance(batch, tuple | list):
                yield np.asarray(batch[0]), np.asarray(batch[1])
            else:
                yield np.asarray(batch), None
        return
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        yield x[start:stop], None if y is None else y[start:stop]


def measure(model: keras.Model, data, batch_size: int = 256) -> dict:
    """Measures accuracy and expected MACs per example at the current thresholds.

    Args:
        model: A functional model (gated cells at its top level).
        data: A `tf.data.Dataset` (or iterable) of `(x, y)` or `x` batches,
            an array `x`, or a tuple `(x, y)` of arrays.
        batch_size: Batch size for arrays.

    Returns:
        A dict: `macs` (mean per example), `accuracy` (top-1 fraction, None
        without labels), `examples`, and `layers` (mean MACs per layer name).
    """
    cells = gated_cells(model)
    blocks = gate_blocks(model)
    all_layers = list(flat_layers(model))
    try:
        probe = keras.Model(
            model.inputs,
            list(model.outputs)
            + [cell.input for cell in cells]
            + [block.gate.output for block in blocks],
        )
    except Exception as error:
        raise ValueError(
            "Measuring MACs on data needs a functional model whose gated cells "
            f"are called once at its top level: {error}"
        ) from error
    sources = {layer.name: gated_source(layer) for layer in all_layers}
    static = {
        layer.name: layer_macs(layer)
        for layer in all_layers
        if not isinstance(layer, InhibitionConv2D)
    }
    totals = dict.fromkeys((layer.name for layer in all_layers), 0.0)
    examples, correct, labelled = 0, 0, 0
    num_outputs = len(model.outputs)
    for x, y in _batches(data, batch_size):
        results = probe.predict_on_batch(x)
        results = results if isinstance(results, list | tuple) else [results]
        logits = results[:num_outputs]
        cell_inputs = results[num_outputs : num_outputs + len(cells)]
        gate_values = results[num_outputs + len(cells) :]
        batch = len(x)
        fraction, computed, needed = {}, {}, {}
        for block, z in zip(blocks, gate_values, strict=True):
            open_ = np.asarray(z) > 0
            for conv, start, stop in block.outputs:
                needed[conv.name] = static[conv.name] * open_[:, start:stop].mean(-1)
            for conv in block.inputs:
                needed[conv.name] = static[conv.name] * open_.mean(-1)
        for cell, cell_input in zip(cells, cell_inputs, strict=True):
            computed[cell.name], active = cell.channel_activity(cell_input)
            fraction[cell.name] = ops.mean(active, axis=-1)
        for cell, cell_input in zip(cells, cell_inputs, strict=True):
            source = sources[cell.name]
            f_in = None if source is None else fraction[source.name]
            needed[cell.name] = cell.macs_of_channels(
                computed[cell.name], tuple(cell_input.shape), f_in
            )
        for layer in all_layers:
            if layer.name in needed:
                per_example = needed[layer.name]
            elif static[layer.name] == 0:
                continue
            elif sources[layer.name] is None:
                totals[layer.name] += static[layer.name] * batch
                continue
            else:
                per_example = static[layer.name] * fraction[sources[layer.name].name]
            totals[layer.name] += float(ops.convert_to_numpy(ops.sum(per_example)))
        examples += batch
        if y is not None:
            labels = np.asarray(y)
            if labels.ndim > 1 and labels.shape[-1] > 1:  # one-hot labels
                labels = np.argmax(labels, axis=-1)
            predicted = np.argmax(np.asarray(logits[0]), axis=-1)
            correct += int(np.sum(predicted == labels.reshape(-1)))
            labelled += batch
    if examples == 0:
        raise ValueError("`data` is empty.")
    per_layer = {name: total / examples for name, total in totals.items() if total}
    return {
        "macs": float(sum(per_layer.values())),
        "accuracy": correct / labelled if labelled else None,
        "examples": examples,
        "layers": per_layer,
    }


def measure_at(model: keras.Model, data, threshold, batch_size: int = 256) -> dict:
    """`measure` with every gate's threshold set to `threshold` (restored after)."""
    gates = find_gates(model)
    previous = [gate.get_threshold() for gate in gates]
    try:
        set_threshold(model, threshold)
        return measure(model, data, batch_size)
    finally:
        for gate, old in zip(gates, previous, strict=True):
            gate.set_threshold(old)


def expected_macs(
    model: keras.Model, threshold=None, data=None, batch_size: int = 256
) -> float:
    """Expected MACs per example of `model` on `data` at `threshold`.

    Args:
        model: A built functional model.
        threshold: Threshold on log-alpha for every gate; `None` keeps the
            gates' current thresholds.
        data: Examples (see `measure`). May be omitted when every gated cell
            is input-independent (`input_dependent=False`, no post path).
        batch_size: Batch size for arrays.
    """
    if data is None:
        cells = gated_cells(model)
        gates = [b.gate for b in gate_blocks(model)]
        if any(cell.input_dependent or cell.postsynaptic for cell in cells) or any(
            gate.input_dependent for gate in gates
        ):
            raise ValueError(
                "`data` is required: the model's gates depend on the input, so "
                "its MACs are an expectation over a dataset."
            )
        data = np.zeros((1, *model.inputs[0].shape[1:]), dtype="float32")
    if threshold is None:
        return measure(model, data, batch_size)["macs"]
    return measure_at(model, data, threshold, batch_size)["macs"]


def threshold_curve(
    model: keras.Model,
    data,
    thresholds,
    batch_size: int = 256,
    reference_macs: float | None = None,
) -> list[dict]:
    """Accuracy and expected MACs of `model` on `data` for each threshold.

    Args:
        model: A trained functional model with gated cells.
        data: Labelled examples (see `measure`).
        thresholds: Iterable of thresholds (`None` = no threshold).
        batch_size: Batch size for arrays.
        reference_macs: If given, each row also has `macs_fraction`, the
            measured MACs divided by this count.

    Returns:
        One dict per threshold: `threshold`, `accuracy`, `macs` (and
        `macs_fraction`).
    """
    rows = []
    for threshold in thresholds:
        result = measure_at(model, data, threshold, batch_size)
        row = {
            "threshold": threshold,
            "accuracy": result["accuracy"],
            "macs": result["macs"],
        }
        if reference_macs:
            row["macs_fraction"] = result["macs"] / reference_macs
        rows.append(row)
    return rows


def plot_threshold_curve(
    rows: list[dict],
    path,
    reference_accuracy=None,
    title: str = "Accuracy against MACs",
) -> str:
    """Plots accuracy against MAC fraction (rows of `threshold_curve`) as a PNG.

    Each point is labelled with its threshold; a dashed line marks the
    reference accuracy when given. The file is written atomically.

    Args:
        rows: Rows with `threshold`, `accuracy` and `macs_fraction`.
        path: Output `.png` path.
        reference_accuracy: Accuracy of the un-gated reference (a fraction).
        title: Plot title.

    Returns:
        The path written.
    """
    try:
        import matplotlib  # optional, and slow to import: for plots only
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install matplotlib"
        ) from error
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not rows or any("macs_fraction" not in row for row in rows):
        raise ValueError(
            "`rows` must be non-empty rows of "
            "`threshold_curve(..., reference_macs=...)`."
        )
    path = str(path)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    fractions = [100 * row["macs_fraction"] for row in rows]
    accuracies = [100 * row["accuracy"] for row in rows]
    axes.plot(fractions, accuracies, "o-", label="gated model")
    previous = None
    for row, x, y in zip(rows, fractions, accuracies, strict=True):
        if previous is not None and abs(x - previous[0]) + abs(y - previous[1]) < 1:
            continue  # label only the first of points that coincide
        previous = (x, y)
        label = "none" if row["threshold"] is None else f"{row['threshold']:g}"
        axes.annotate(
            label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7
        )
    if reference_accuracy is not None:
        axes.axhline(
            100 * reference_accuracy,
            linestyle="--",
            color="grey",
            label="reference accuracy",
        )
        axes.plot([100], [100 * reference_accuracy], "s", color="grey")
    axes.set_xlabel("MACs (% of reference)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(figure)
    return path


def format_threshold_table(rows: list[dict], reference_accuracy=None) -> str:
    """A markdown table of `threshold_curve` rows.

    Columns: threshold, accuracy (%), difference to `reference_accuracy`
    (points, when given), expected MACs, and % of the reference MACs (when
    the rows have `macs_fraction`).
    """
    header = ["threshold", "accuracy (%)"]
    if reference_accuracy is not None:
        header.append("vs reference (points)")
    header.append("expected MACs")
    with_fraction = all("macs_fraction" in row for row in rows)
    if with_fraction:
        header.append("% of reference MACs")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        threshold = row["threshold"]
        cells = [
            "none (-inf)" if threshold is None else f"{threshold:g}",
            f"{100 * row['accuracy']:.2f}",
        ]
        if reference_accuracy is not None:
            cells.append(f"{100 * (row['accuracy'] - reference_accuracy):+.2f}")
        cells.append(f"{row['macs']:,.0f}")
        if with_fraction:
            cells.append(f"{100 * row['macs_fraction']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
