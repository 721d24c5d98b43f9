"""ONNX export, with metadata and a run-time threshold input.

Two engines write the graph:

- `"builder"` (`spzoo.export.onnx_builder`): the ResNet family (convolution
  groups, batch norm, neuron layers, block gates) written node by node in
  NCHW for ONNX Runtime's blocked CPU kernels; models with
  input-independent block gates get one sub-network per threshold level,
  so the work done falls when the threshold is raised;
- `"tf2onnx"`: any model, through tf2onnx's `from_function` on the serving
  `tf.function` (`spzoo.export.serving`; tf2onnx's `convert.from_keras` is
  broken for TensorFlow >= 2.16 with Keras 3, and `from_function` is the
  path Keras's own `model.export(format="onnx")` takes); gated channels
  are masked (computed, then multiplied by zero).

`engine="auto"` (the default) takes the builder when it supports the model.
Either graph has:

- input `image`, float32 `[batch, H, W, C]` (`batch` dynamic);
- for gated models, input `threshold`, a float32 scalar and a true graph
  input: no initializer holds a default that a runtime could fold into a
  constant (ONNX Runtime overrides such an initializer, other conformant
  runtimes may not), so every caller passes a value; the default is
  `metadata["threshold"]["default"]` (null: no threshold, -inf), which
  `spzoo.export.load` passes when none is given, and the builder's graph
  clamps the value to `metadata["threshold"]["range"]`;
- output `logits`, float32 `[batch, K]`;
- `metadata_props["spzoo"]`: the metadata JSON (with `"onnx"`: the engine
  and, for the builder, its threshold levels and their MACs).
"""

from pathlib import Path

import keras

from spzoo.export.defaults import DEFAULT_OPSET, ENGINES
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


def _finish(proto, metadata: dict, threshold_input: bool):
    """Names the batch dimension and the I/O and adds the metadata; returns
    the checked proto."""
    import onnx

    graph = proto.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise ValueError(f"Expected one ONNX output; the graph has {outputs}.")
    _rename_value(graph, outputs[0], OUTPUT_NAME)
    input_name = metadata["input"].get("name", INPUT_NAME)  # or a waveform
    for value in graph.input:
        if value.name.startswith(THRESHOLD_NAME):
            _rename_value(graph, value.name, THRESHOLD_NAME)
        elif value.name.startswith(input_name):
            _rename_value(graph, value.name, input_name)
    names = sorted(v.name for v in graph.input)
    expected = sorted([input_name] + ([THRESHOLD_NAME] if threshold_input else []))
    if names != expected:
        raise ValueError(f"Expected ONNX inputs {expected}; the graph has {names}.")
    if any(t.name in names for t in graph.initializer):
        raise ValueError("An ONNX graph input is also an initializer.")
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
    engine: str = "auto",
    levels=None,
    batch_chunk: int | None = None,
) -> Path:
    """Writes `model` as an ONNX file (see the module docstring).

    Args:
        model: A Keras model with one image input.
        path: Output `.onnx` file, written through a temporary file.
        metadata: The metadata document (default: `model_metadata(model)`).
        threshold_input: Add the `threshold` input (default: gated models).
        opset: ONNX opset of the tf2onnx engine, 13 to the highest that
            tf2onnx converts (18); the builder always writes opset 13 (ONNX
            Runtime keeps `Add` and `Mul` of opset 13 in its blocked layout).
        dynamic_slim: tf2onnx engine: remove the channels that
            input-independent `InhibitionConv2D` cells close at the run-time
            threshold inside the graph (`spzoo.export.dynamic`) instead of
            masking them.
        engine: `"auto"`, `"builder"` or `"tf2onnx"` (see the module
            docstring).
        levels: Builder engine, input-independent block gates: the
            thresholds at which the graph switches to a slimmer sub-network
            (default `onnx_builder.default_levels`; `[]`: one network).
        batch_chunk: Builder engine: a batch larger than this runs in chunks
            of this many examples inside the graph (default
            `batch_chunks.CHUNK`, fastest on CPUs here; 0: the whole batch
            at once, e.g. for a GPU).

    Returns:
        The path written; the file passes `onnx.checker.check_model`.
    """
    import onnx
    import tf2onnx

    from spzoo.export.batch_chunks import CHUNK
    from spzoo.export.onnx_builder import UnsupportedModel, build_onnx, check_supported

    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}; received {engine!r}.")
    chunk_ok = isinstance(batch_chunk, int) and not isinstance(batch_chunk, bool)
    if batch_chunk is not None and not (chunk_ok and batch_chunk >= 0):
        raise ValueError(
            "`batch_chunk` must be an int >= 0 (0: the whole batch at once); "
            f"received {batch_chunk!r}."
        )
    highest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if not isinstance(opset, int) or not 13 <= opset <= highest:
        raise ValueError(
            f"`opset` must be an int in [13, {highest}] (tf2onnx "
            f"{tf2onnx.__version__} converts up to opset {highest}); "
            f"received {opset!r}."
        )

    if engine == "auto":
        engine = "tf2onnx"
        if not dynamic_slim:
            try:
                check_supported(model)
                engine = "builder"
            except UnsupportedModel:
                pass
    if engine == "builder":
        if dynamic_slim:
            raise ValueError("`dynamic_slim` is an option of the tf2onnx engine.")
        metadata = metadata or model_metadata(model, threshold_input=threshold_input)
        if metadata["threshold"]["gated"] and not metadata["threshold"]["input"]:
            raise ValueError(
                "The ONNX builder always takes the threshold input of a gated "
                "model; use engine='tf2onnx' for `threshold_input=False`."
            )
        proto, info = build_onnx(
            model,
            levels=levels,
            threshold_range=metadata["threshold"]["range"],
            batch_chunk=CHUNK if batch_chunk is None else batch_chunk or None,
        )
        metadata = dict(
            metadata,
            onnx={
                "engine": "builder",
                "levels": info["levels"],
                "batch_chunk": info["batch_chunk"],
            },
        )
        proto.metadata_props.append(
            onnx.StringStringEntryProto(key=METADATA_KEY, value=dumps(metadata))
        )
        onnx.checker.check_model(proto, full_check=True)
        path = Path(path)
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
        return path
    if levels is not None:
        raise ValueError("`levels` is an option of the builder engine.")
    if batch_chunk:
        raise ValueError("`batch_chunk` is an option of the builder engine.")
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    metadata = metadata or model_metadata(model, threshold_input=threshold_input)
    metadata = dict(metadata, onnx={"engine": "tf2onnx"})
    serve, serve_threshold = serving_functions(
        model, threshold_input, metadata["threshold"]["range"]
    )
    function = serve_threshold or serve
    if dynamic_slim:
        if serve_threshold is None:
            raise ValueError(
                "`dynamic_slim=True` needs a gated model with the threshold "
                f"input; {model.name!r} has no gates or `threshold_input=False`."
            )
        function = dynamic_slim_function(model)
    import warnings

    with warnings.catch_warnings():  # its `hasattr(np, "object")` FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=opset
    )
    proto = _finish(proto, metadata, serve_threshold is not None)
    path = Path(path)
    with atomic_path(path) as tmp:  # usual file mode, not mkstemp's 0600
        onnx.save(proto, str(tmp))
    return path
