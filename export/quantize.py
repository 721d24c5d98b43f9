"""int8 ONNX: ONNX Runtime's static quantization of an exported float model.

```python
quantize_onnx("model.onnx", "model.int8.onnx", calibration=train_images[:256])
```

The float ONNX file written by `to_onnx` is quantized with
`onnxruntime.quantization.quantize_static`: QDQ format (QuantizeLinear /
DequantizeLinear pairs around the integer kernels, the format ONNX Runtime's
CPU, CUDA and TensorRT providers and other runtimes read), int8 weights per
output channel, int8 activations with ranges calibrated on examples of the
training set (min-max by default). The file keeps float32 input and output
and its spzoo metadata, with a `"quantization"` record added (scheme,
calibration method and number of examples, and the float file's sha256), so
`spzoo.runtime.load` runs it like the float file. A gated model is
calibrated at its default threshold; the threshold stays a run-time input.

Accuracy is not parity-checked against Keras to 1e-4 (int8 cannot meet
that): measure it from the file (`spzoo.zoo.evaluate`) and report the drop.
"""

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from spzoo.artifact import INPUT_NAME, METADATA_KEY, THRESHOLD_NAME
from spzoo.export.batch_chunks import whole_batch
from spzoo.export.defaults import CALIBRATION_EXAMPLES, QUANTIZE  # noqa: F401
from spzoo.export.metadata import dumps
from spzoo.export.parity import first_examples
from spzoo.io import atomic_path
from spzoo.runtime import onnx_metadata, resolve_threshold

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
MIN_CALIBRATION_EXAMPLES = 8
# An int8 export passes its check when its top-1 class agrees with Keras on
# this fraction of the parity examples and no logit is further from Keras's
# than this fraction of the largest Keras logit (a broken quantization is
# caught, the rounding of a working one is not mistaken for a failure).
INT8_MIN_AGREEMENT = 0.97
INT8_RTOL = 0.5


def training_examples(dataset: str, input_shape, count: int) -> np.ndarray:
    """The first `count` examples of `dataset`'s training split, float32:
    calibration data, never the evaluation examples."""
    x = first_examples(dataset, "train", count)
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"Dataset {dataset!r} has examples of shape {tuple(x.shape[1:])}; "
            f"the model expects {tuple(input_shape)}."
        )
    return check_calibration(x, tuple(input_shape))


def check_calibration(calibration, shape: tuple) -> np.ndarray:
    """`calibration` as float32 examples of `shape`, or `ValueError`."""
    x = np.asarray(calibration)
    expected = f"float32 examples of shape (n, {', '.join(map(str, shape))})"
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"`calibration` of shape {tuple(x.shape)}: expected {expected} "
            f"with n >= {MIN_CALIBRATION_EXAMPLES}."
        )
    if len(x) < MIN_CALIBRATION_EXAMPLES:
        raise ValueError(
            f"`calibration` holds {len(x)} examples: expected {expected} with "
            f"n >= {MIN_CALIBRATION_EXAMPLES}."
        )
    if not np.isfinite(x).all():
        raise ValueError("`calibration` holds NaN or infinite values.")
    return x.astype(np.float32, copy=False)


def calibration_thresholds(metadata: dict, thresholds=(None,)) -> list:
    """The float32 thresholds calibration cycles through (gated models: the
    default's and `thresholds`, as `spzoo.runtime.resolve_threshold` gives
    them; `[None]` for a model without a threshold input)."""
    if not metadata["threshold"]["input"]:
        return [None]
    values = []
    for t in [None, *thresholds]:
        value = resolve_threshold(metadata, t)
        if not any(value == v for v in values):
            values.append(value)
    return values


def _reader(metadata: dict, x: np.ndarray, batch_size: int, thresholds: list):
    from onnxruntime.quantization import CalibrationDataReader

    input_name = metadata["input"].get("name", INPUT_NAME)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(range(0, len(x), batch_size))

        def get_next(self):
            start = next(self._batches, None)
            if start is None:
                return None
            feed = {input_name: x[start : start + batch_size]}
            threshold = thresholds[(start // batch_size) % len(thresholds)]
            if threshold is not None:
                feed[THRESHOLD_NAME] = threshold
            return feed

    return Reader()


def quantize_onnx(
    source,
    target,
    calibration,
    method: str = "minmax",
    batch_size: int = 32,
    thresholds=(),
) -> Path:
    """Writes an int8 (QDQ) copy of the float ONNX file `source` to `target`.

    Args:
        source: A float `.onnx` file written by `spzoo export`.
        target: The int8 `.onnx` file (written through a temporary file and
            renamed, so a killed run leaves no half-written file).
        calibration: Training examples, float32 `(n, H, W, C)` as the model
            takes them (n >= 8; a few hundred are typical).
        method: Activation-range calibration: `"minmax"`, `"entropy"` or
            `"percentile"` (ONNX Runtime's `CalibrationMethod`).
        batch_size: Examples per calibration batch.
        thresholds: Gated models: thresholds besides the default to
            calibrate at (the batches cycle through them), so that the
            activation ranges hold wherever the file will be run.

    Returns:
        The path of the int8 file.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"`method` must be one of {CALIBRATION_METHODS}; received {method!r}."
        )
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive integer; received {batch_size!r}."
        )
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ValueError("`target` must differ from `source`.")
    try:
        proto = onnx.load(str(source))
    except Exception as error:
        raise ValueError(
            f"`source` {str(source)!r} is not a readable ONNX file: {error}"
        ) from None
    metadata = onnx_metadata(proto, source)
    if metadata.get("quantization"):
        raise ValueError(f"`source` {str(source)!r} is already quantized.")
    x = check_calibration(calibration, tuple(metadata["input"]["shape"]))
    levels = calibration_thresholds(metadata, thresholds)

    work = Path(tempfile.mkdtemp(prefix="spzoo_int8_"))
    try:
        prepared = work / "prepared.onnx"
        # A builder file that computes large batches in chunks: quantize the
        # network itself (the quantizer would not quantize weights read
        # through the chunk branches' Gathers).
        whole = whole_batch(proto)
        network = source
        if whole is not proto:
            network = work / "whole_batch.onnx"
            onnx.save(whole, str(network))
            metadata = {**metadata, "onnx": {**metadata["onnx"], "batch_chunk": None}}
        quant_pre_process(str(network), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(work / "int8.onnx"),
            _reader(metadata, x, batch_size, levels),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method],
            extra_options={"EnableSubgraph": True},
        )
        quantized = onnx.load(str(work / "int8.onnx"))
        record = {
            "scheme": "int8 QDQ (ONNX Runtime quantize_static): per-channel "
            "symmetric int8 weights, int8 activations",
            "calibration": {
                "method": method,
                "examples": int(len(x)),
                "thresholds": [float(t) for t in levels if t is not None],
            },
            "float_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        }
        del quantized.metadata_props[:]
        quantized.metadata_props.append(
            onnx.StringStringEntryProto(
                key=METADATA_KEY, value=dumps({**metadata, "quantization": record})
            )
        )
        with atomic_path(target) as staging:
            onnx.save(quantized, str(staging))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
