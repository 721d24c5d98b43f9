"""The metadata an exported model carries: what it is and how to feed it.

Every artifact carries one JSON document (`model_metadata`):

```
{"format": "spzoo-export/1", "spzoo_version": ..., "architecture": ...,
 "input": {"name": "image", "shape": [H, W, C], "dtype": "float32",
           "preprocessing": ..., "preprocessing_config": {...}, "raw": false},
 "output": {"name": "logits", "classes": [...]},
 "threshold": {"input": "threshold" | null, "default": t, "range": [lo, hi]},
 ...}
```

It is stored as ONNX `metadata_props` (key `spzoo`), as the SavedModel asset
`assets/spzoo_metadata.json`, and next to a TFLite file as the sidecar
`<file>.tflite.json` (see `metadata_path`).
"""

import json
import math

import keras
import numpy as np

import spzoo
from spzoo.artifact import (  # noqa: F401  (the names, for the writers)
    ASSET_NAME,
    FORMAT,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    THRESHOLD_NAME,
    WAVEFORM_NAME,
    check_metadata,
    metadata_path,
)
from spzoo.layers.hard_concrete_gate import find_gates, get_threshold
from spzoo.layers.presynaptic_gate import PresynapticGate
from spzoo.metrics.counting import flat_layers
from spzoo.metrics.gated import gated_cells


def has_gates(model: keras.Model) -> bool:
    """Whether the model holds hard-concrete gates (so takes a threshold)."""
    return bool(find_gates(model))


def default_threshold(model: keras.Model) -> float:
    """The model's trained threshold; `-inf` (every gate by its estimator)
    when the gates hold none."""
    value = get_threshold(model)
    return -math.inf if value is None else float(value)


def threshold_range(model: keras.Model, x=None) -> list | None:
    """`[lo, hi]`: the range of the model's gates' log-alpha.

    A threshold at or below `lo` closes no gate, one above `hi` closes all.
    Static (input-independent) gates are read from the weights;
    input-dependent pre-synaptic gates need example inputs `x` (a NumPy
    batch), whose activations at each gate give their log-alpha. `lo` is
    at most `log(-gamma / zeta)`, below which the hard-concrete estimator is
    zero anyway (so clamping a threshold to `lo` never changes an output,
    even for inputs whose log-alpha falls below the examples'); `lo` is
    rounded down and `hi` up to 4 decimals. Returns None when the model has
    no gates or the range needs `x` and none was given.
    """
    cells = gated_cells(model)
    gates = [
        layer for layer in flat_layers(model) if isinstance(layer, PresynapticGate)
    ]
    if not cells and not gates:
        return None
    values = []
    dynamic = [c for c in cells if c.input_dependent or c.postsynaptic]
    dynamic_gates = [g for g in gates if g.input_dependent]
    for cell in cells:
        if not (cell.input_dependent or cell.postsynaptic):
            values.append(np.asarray(cell.log_alpha) * cell.log_alpha_scale)
    for gate in gates:
        if not gate.input_dependent:
            values.append(gate.static_log_alpha())
    if dynamic or dynamic_gates:
        if x is None:
            return None
        probe = keras.Model(
            model.inputs, [c.input for c in dynamic] + [g.input for g in dynamic_gates]
        )
        inputs = probe.predict(np.asarray(x[:256]), verbose=0)
        if len(dynamic) + len(dynamic_gates) == 1:
            inputs = [inputs]
        for cell, cell_input in zip(dynamic, inputs, strict=False):
            if cell.presynaptic:
                values.append(
                    keras.ops.convert_to_numpy(cell.presynaptic_log_alpha(cell_input))
                )
        for gate, gate_input in zip(dynamic_gates, inputs[len(dynamic) :], strict=True):
            values.append(keras.ops.convert_to_numpy(gate.log_alpha(gate_input)))
    if not values:
        return None
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in values])
    hard = [g.gate for g in gates] + [
        c.presynaptic_gate or c.postsynaptic_gate for c in cells
    ]
    closed = min(math.log(-g.gamma / g.zeta) for g in hard)
    lo = math.floor(min(float(flat.min()), closed) * 1e4) / 1e4
    hi = math.ceil(float(flat.max()) * 1e4) / 1e4
    return [lo, hi]


def input_name(model: keras.Model) -> str:
    """The artifact's input name: `waveform` for a model taking `(batch,
    samples)` (a raw-input audio export), else `image`."""
    return WAVEFORM_NAME if len(model.inputs[0].shape) == 2 else INPUT_NAME


def input_metadata(
    model: keras.Model,
    preprocessing: str | None = None,
    preprocessing_config: dict | None = None,
    raw_input: bool = False,
) -> dict:
    """The `input` section of the metadata (see `model_metadata`)."""
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    return {
        "name": input_name(model),
        "shape": shape,
        "dtype": str(model.inputs[0].dtype),
        "layout": "NHWC" if len(shape) == 3 else "NT",
        "preprocessing": preprocessing,
        "preprocessing_config": preprocessing_config,
        "raw": bool(raw_input),
    }


def model_metadata(
    model: keras.Model,
    classes=None,
    preprocessing: str | None = None,
    dataset: str | None = None,
    x=None,
    threshold_input: bool | None = None,
    extra: dict | None = None,
    preprocessing_config: dict | None = None,
    raw_input: bool = False,
) -> dict:
    """The metadata document of an export of `model`.

    Args:
        model: A built Keras model with one image input.
        classes: Class names, index = logit; default `"0"`, `"1"`, ...
        preprocessing: How inputs are prepared (e.g. the dataset's
            description: "[0,1] scaling").
        dataset: The dataset the model was trained on.
        x: Example inputs, to measure the threshold range of
            input-dependent gates.
        threshold_input: Whether the artifact takes a threshold input
            (default: when the model has gates).
        extra: More keys (e.g. `{"slim": {...}}`).
        preprocessing_config: The preprocessing as data
            (`spzoo.data.preprocessing`), stored as
            `input.preprocessing_config`.
        raw_input: Whether `model` takes raw inputs (uint8 pixels or a
            waveform) with the preprocessing inside (`spzoo.export.raw_input`);
            `input.raw` records it.
    """
    num_classes = int(model.outputs[0].shape[-1])
    classes = [str(c) for c in (classes or range(num_classes))]
    if len(classes) != num_classes:
        raise ValueError(
            f"`classes` has {len(classes)} names; the model has {num_classes} logits."
        )
    gated = has_gates(model)
    if threshold_input is None:
        threshold_input = gated
    default = default_threshold(model) if gated else None
    document = {
        "format": FORMAT,
        "spzoo_version": spzoo.__version__,
        "keras_version": keras.__version__,
        "architecture": model.name,
        "dataset": dataset,
        "input": input_metadata(model, preprocessing, preprocessing_config, raw_input),
        "output": {"name": OUTPUT_NAME, "kind": "logits", "classes": classes},
        "threshold": {
            "gated": gated,
            "input": THRESHOLD_NAME if threshold_input else None,
            "default": None if default is None or math.isinf(default) else default,
            "range": threshold_range(model, x) if gated else None,
        },
    }
    if extra:
        document.update(extra)
    return document


def dumps(metadata: dict) -> str:
    """The metadata as JSON text."""
    return json.dumps(metadata, indent=2, sort_keys=True)
