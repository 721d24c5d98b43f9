"""TFLite export from a SavedModel, with the metadata as a sidecar JSON.

`TFLiteConverter.from_saved_model` converts the serving signatures written
by `to_saved_model` (`from_concrete_functions` on a Keras 3 model gave
silent NaN outputs here). The `.tflite` flatbuffer keeps the signatures:
`serving_default(image) -> logits` and, for gated models,
`serve_threshold(image, threshold) -> logits`. The metadata goes to the
sidecar `<file>.tflite.json` (TFLite's metadata schema needs the
`tflite-support` writer, which is not part of this stack).
"""

import hashlib
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from spzoo.artifact import INPUT_NAME, MODEL_SHA256, THRESHOLD_NAME
from spzoo.export.metadata import dumps, metadata_path, model_metadata
from spzoo.export.quantize import calibration_thresholds, check_calibration
from spzoo.export.saved_model import SIGNATURE, THRESHOLD_SIGNATURE, to_saved_model
from spzoo.io import remove_stale, temp_path


def _representative(examples: np.ndarray, metadata: dict, keys: list, levels):
    """The converter's calibration generator: one example per call, for
    every signature (with several, TFLite wants `(key, inputs)` pairs); the
    threshold signature cycles through the threshold `levels`."""
    input_name = metadata["input"].get("name", INPUT_NAME)

    def generate():
        for i, x in enumerate(examples):
            for key in keys:
                inputs = {input_name: x[None]}
                if key == THRESHOLD_SIGNATURE:
                    inputs[THRESHOLD_NAME] = levels[i % len(levels)]
                yield (key, inputs) if len(keys) > 1 else inputs

    return generate


def _int8_record(examples: np.ndarray, levels: list) -> dict:
    return {
        "scheme": "full-integer int8 (TFLite post-training integer "
        "quantization): int8 weights and activations, float32 input and output",
        "calibration": {
            "method": "minmax",
            "examples": int(len(examples)),
            "thresholds": [float(t) for t in levels if t is not None],
        },
    }


def to_tflite(
    model: keras.Model,
    path,
    metadata: dict | None = None,
    threshold_input: bool | None = None,
    float16_weights: bool = False,
    int8_examples=None,
    int8_thresholds=(),
) -> Path:
    """Writes `model` as a `.tflite` file plus `<file>.tflite.json`.

    Args:
        model: A Keras model with one image input.
        path: Output `.tflite` file (written through a temporary file).
        metadata: The metadata document (default: `model_metadata(model)`).
        threshold_input: Add the threshold signature (default: gated models).
        float16_weights: Store the weights as float16 (TFLite's float16
            post-training quantization: half the file, computed in float32
            on CPUs); default float32.
        int8_examples: Training examples, float32 `(n, H, W, C)`: convert
            to full-integer int8 (TFLite's post-training integer
            quantization, every op an int8 kernel, `TFLITE_BUILTINS_INT8`),
            activation ranges calibrated on them (gated models at their
            default threshold); the input and output stay float32. The
            sidecar metadata gets a `"quantization"` record.
        int8_thresholds: With `int8_examples`, gated models: thresholds
            besides the default to calibrate at (see `quantize_onnx`).

    Returns:
        The path of the `.tflite` file.
    """
    import tensorflow as tf

    metadata = metadata or model_metadata(model, threshold_input=threshold_input)
    if float16_weights and int8_examples is not None:
        raise ValueError("Pass `float16_weights` or `int8_examples`, not both.")
    if int8_examples is not None:
        int8_examples = check_calibration(int8_examples, metadata["input"]["shape"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)  # staging folders of killed exports
    staging = temp_path(path)
    staging.mkdir()
    try:
        saved = to_saved_model(  # masked gates: TFLite kernels want fixed shapes
            model, staging / "saved_model", metadata, threshold_input, slim_blocks=False
        )
        keys = [SIGNATURE]
        if metadata["threshold"]["input"]:
            keys.append(THRESHOLD_SIGNATURE)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved), signature_keys=keys
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if float16_weights:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        if int8_examples is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            levels = calibration_thresholds(metadata, int8_thresholds)
            converter.representative_dataset = _representative(
                int8_examples, metadata, keys, levels
            )
            metadata = {**metadata, "quantization": _int8_record(int8_examples, levels)}
        flatbuffer = converter.convert()
        tmp = staging / "model.tflite"
        tmp.write_bytes(flatbuffer)
        # The sidecar names its model: a kill between the two renames below
        # (or a copy mixing two exports) is an error on loading, not a model
        # with another model's labels.
        metadata = {**metadata, MODEL_SHA256: hashlib.sha256(flatbuffer).hexdigest()}
        sidecar = staging / "model.json"
        sidecar.write_text(dumps(metadata))
        os.replace(sidecar, metadata_path(path))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
