"""Serving graphs that swap layers for run-time sliced ones at a threshold.

`spzoo.export.block_slim` (block gates) and `spzoo.export.dynamic` (gated
cells) both run the Keras graph with some layers replaced by functions that
gather the channels open at the run-time threshold; this module holds what
they share: the traced `serve(image, threshold)` and a convolution with a
kernel of run-time shape.
"""

from collections.abc import Callable

import keras
import tensorflow as tf
from keras import ops

from spzoo.export.metadata import OUTPUT_NAME
from spzoo.export.serving import (
    THRESHOLD_SPEC,
    clamp_threshold,
    ensure_called,
    image_spec,
)
from spzoo.layers.hard_concrete_gate import threshold_scope


def sliced_conv(layer: keras.layers.Conv2D, x, kernel, bias=None):
    """`layer`'s convolution of `x` with another `kernel` (and `bias`)."""
    y = ops.conv(
        x,
        kernel,
        strides=layer.strides,
        padding=layer.padding,
        data_format="channels_last",
        dilation_rate=layer.dilation_rate,
    )
    return y if bias is None else y + bias


def rewritten_serve(
    model: keras.Model,
    state_of: Callable,
    replacement: Callable,
    threshold_range=None,
):
    """`serve(image, threshold) -> {"logits"}` running `model`'s graph with
    each layer swapped for `replacement(layer, state)` (the layer itself
    to keep it), where `state = state_of(threshold)` is computed once per
    call; gates left in the graph read the same threshold
    (`threshold_scope`), clamped to `threshold_range` when given."""
    ensure_called(model)

    @tf.function(input_signature=[image_spec(model), THRESHOLD_SPEC])
    def serve(image, threshold):
        threshold = clamp_threshold(threshold, threshold_range)
        state = state_of(threshold)
        with threshold_scope(threshold):
            logits = model._run_through_graph(
                image, operation_fn=lambda layer: replacement(layer, state)
            )
        return {OUTPUT_NAME: logits}

    return serve
