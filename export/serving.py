"""Serving functions: the traced inference graphs that every export is made of.

`serving_functions(model)` returns `tf.function`s with named inputs and a
dynamic batch dimension:

```
serve(image[B, H, W, C])                       -> {"logits": [B, K]}
serve_threshold(image[B, H, W, C], threshold[]) -> {"logits": [B, K]}
```

The second exists for models with gated cells: the scalar `threshold`
reaches every gate through `threshold_scope`, so one graph serves every
threshold; `serve` uses the gates' own (trained) threshold variables.
Inference graphs call the model with `training=False`, so augmentation and
dropout layers are inert and no custom gradient is traced.
"""

import keras
import tensorflow as tf

from spzoo.export.metadata import (
    OUTPUT_NAME,
    THRESHOLD_NAME,
    has_gates,
    input_name,
)
from spzoo.layers.hard_concrete_gate import threshold_scope


def image_spec(model: keras.Model) -> tf.TensorSpec:
    """The model's input: `(None, H, W, C)` named `image` (float32, or
    uint8 for a raw-input export), or `(None, samples)` float32 named
    `waveform` (a raw-input audio export)."""
    if len(model.inputs) != 1:
        raise ValueError(
            f"Export needs a model with one input; {model.name!r} has "
            f"{len(model.inputs)}."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"Export needs a fixed example shape; {model.name!r} takes {shape}."
        )
    dtype = tf.as_dtype(str(model.inputs[0].dtype))
    return tf.TensorSpec((None, *shape), dtype, name=input_name(model))


THRESHOLD_SPEC = tf.TensorSpec((), tf.float32, name=THRESHOLD_NAME)


def clamp_threshold(threshold, threshold_range=None):
    """The traced `threshold` clamped to `[lo, hi]` (the metadata's trained
    range), or as it is without a range."""
    if not threshold_range:
        return threshold
    lo, hi = (float(v) for v in threshold_range)
    return tf.clip_by_value(threshold, lo, hi)


def ensure_called(model: keras.Model) -> keras.Model:
    """Calls a model once (a model fresh from `load_model` must be called
    before `tf.function` tracing sees its variables as built)."""
    spec = image_spec(model)
    model(tf.zeros((1, *spec.shape[1:]), spec.dtype), training=False)
    return model


def serving_functions(
    model: keras.Model, threshold_input: bool | None = None, threshold_range=None
):
    """Returns `(serve, serve_threshold)`; `serve_threshold` is None for a
    model without gates or with `threshold_input=False`.

    With `threshold_range` `[lo, hi]`, `serve_threshold` clamps its
    threshold to it (the trained range of the metadata).

    Raises `ValueError` when `threshold_input=True` and the model has no gates.
    """
    gated = has_gates(model)
    if threshold_input and not gated:
        raise ValueError(
            f"`threshold_input=True` needs a model with gated cells; "
            f"{model.name!r} has none."
        )
    if threshold_input is None:
        threshold_input = gated
    ensure_called(model)
    spec = image_spec(model)

    @tf.function(input_signature=[spec])
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    if not threshold_input:
        return serve, None

    @tf.function(input_signature=[spec, THRESHOLD_SPEC])
    def serve_threshold(image, threshold):
        with threshold_scope(clamp_threshold(threshold, threshold_range)):
            return {OUTPUT_NAME: model(image, training=False)}

    return serve, serve_threshold
