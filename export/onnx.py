"""ONNX export through tf2onnx's `from_function`, with metadata and a threshold input.

tf2onnx's `convert.from_keras` is broken for TensorFlow >= 2.16 with Keras
3, so the serving `tf.function` (see `spzoo.export.serving`) is converted
with `from_function`, the path Keras's own `model.export(format="onnx")`
takes. The graph has:

- input `image`, float32 `[batch, H, W, C]` (`batch` dynamic);
- for gated models, input `threshold`, a float32 scalar that is also an
  initializer holding the trained default, so runtimes may omit it (ONNX
  IR >= 4: an initializer that is a graph input is an overridable default);
- output `logits`, float32 `[batch, K]`;
- `metadata_props["spzoo"]`: the metadata JSON.
"""

from pathlib import Path

import keras
import numpy as np
from spzoo.export.dynamic import dynamic_slim_function
from spzoo.export.metadata import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    THRESHOLD_NAME,
    dumps,
    model_metadata,
)
from spzoo.export.serving import serving_functions

from spzoo.io import atomic_path

DEFAULT_OPSET = 17


def _rename_value(graph, old: str, new: str) -> None:
    """Renames a value (graph input/output, node inputs/outputs) in `graph`."""
    if old == new:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _finish(proto, metadata: dict, default_threshold: float | None):
    """Names the batch dimension and the I/O, adds the threshold default and
    the metadata; returns the checked proto."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise ValueError(f"Expected one ONNX output; the graph has {outputs}.")
    _rename_value(graph, outputs[0], OUTPUT_NAME)
    for value in graph.input:
        if value.name.startswith(THRESHOLD_NAME):
            _rename_value(graph, value.name, THRESHOLD_NAME)
        elif value.name.startswith(INPUT_NAME):
            _rename_value(graph, value.name, INPUT_NAME)
    names = sorted(v.name for v in graph.input)
    expected = sorted(
        [INPUT_NAME] + ([THRESHOLD_NAME] if default_threshold is not None else [])
    )
    if names != expected:
        raise ValueError(f"Expected ONNX inputs {expected}; the graph has {names}.")
    if default_threshold is not None:
        graph.initializer.append(
            numpy_helper.from_array(
                np.asarray(default_threshold, np.float32), THRESHOLD_NAME
            )
        )
    del proto.metadata_props[:]
    proto.metadata_props.append(
        onnx.StringStringEntryProto(key=METADATA_KEY, value=dumps(metadata))
    )
    proto.doc_string = f"spzoo export of {metadata['architecture']}"
    proto.producer_name = "spzoo"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(
    model: keras.Model,
    path,
    metadata: dict | None = None,
    threshold_input: bool | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_slim: bool = False,
) -> Path:
    """Writes `model` as an ONNX file (see the module docstring).

    Args:
        model: A Keras model with one image input.
        path: Output `.onnx` file, written through a temporary file.
        metadata: The metadata document (default: `model_metadata(model)`).
        threshold_input: Add the `threshold` input (default: gated models).
        opset: ONNX opset, 13 to the highest that tf2onnx converts (18).
        dynamic_slim: Remove the channels that input-independent gates
            close at the run-time threshold inside the graph
            (`spzoo.export.dynamic`) instead of masking them.

    Returns:
        The path written; the file passes `onnx.checker.check_model`.
    """
    import onnx
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    highest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if not isinstance(opset, int) or not 13 <= opset <= highest:
        raise ValueError(
            f"`opset` must be an int in [13, {highest}] (tf2onnx "
            f"{tf2onnx.__version__} converts up to opset {highest}); "
            f"received {opset!r}."
        )
    metadata = metadata or model_metadata(model, threshold_input=threshold_input)
    serve, serve_threshold = serving_functions(model, threshold_input)
    function = serve_threshold or serve
    if dynamic_slim:
        if serve_threshold is None:
            raise ValueError(
                "`dynamic_slim=True` needs a gated model with the threshold "
                f"input; {model.name!r} has no gates or `threshold_input=False`."
            )
        function = dynamic_slim_function(model)
    default = None
    if serve_threshold is not None:
        default = metadata["threshold"]["default"]
        default = -np.inf if default is None else float(default)
    patch_tf2onnx()
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=opset
    )
    proto = _finish(proto, metadata, default)
    path = Path(path)
    with atomic_path(path) as tmp:  # usual file mode, not mkstemp's 0600
        onnx.save(proto, str(tmp))
    return path
