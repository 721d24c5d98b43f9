"""`macs`: a model's MACs per example, as built or as gated on data."""

import keras

from spzoo.metrics.counting import static_macs
from spzoo.metrics.gated import expected_macs


def macs(model: keras.Model, threshold=None, data=None) -> int | float:
    """Multiply-accumulates of one forward pass on one example.

    Counts convolutions and dense layers (`spzoo.metrics.counting.layer_macs`);
    batch norm, activations and neuron layers are element-wise and not
    counted. The model must be built (a functional model always is).

    With `threshold` or `data`, returns instead the expected MACs per
    example (a float) of a model with gated cells on `data` at `threshold`,
    counting only the channels the gates let through, in the gated cells
    and in the following layers' inputs (see
    `spzoo.metrics.gated.expected_macs`).

    Args:
        model: A built Keras model.
        threshold: Threshold on log-alpha for every gate (None: as set).
        data: Examples to average over (arrays or a `tf.data.Dataset`).
    """
    if threshold is not None or data is not None:
        return expected_macs(model, threshold=threshold, data=data)
    return static_macs(model)
