"""Input checks and call dispatch shared by every neuron layer."""

from keras import layers

from spzoo.layers.neuron_response import _forward, neuron_response


class NeuronLayer(layers.Layer):
    """Base class of the signal-processing neuron layers.

    Subclasses define `gains()`, returning the per-channel `(linear, max,
    coincidence)` gains of `spzoo.layers.neuron_response`. Inputs must be
    float tensors of rank 2 `(batch, features)` or rank 4 `(batch, height,
    width, channels)`; the channel axis is the last one.
    """

    trainable_gains = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _check_input_shape(self, input_shape):
        rank = len(input_shape)
        if rank not in (2, 4):
            raise ValueError(
                f"{type(self).__name__} expects `inputs` of rank 2 "
                "(batch, features) or rank 4 (batch, height, width, channels); "
                f"received shape {tuple(input_shape)} (rank {rank})."
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} needs a known channel count (last axis "
                f"of `inputs`); received shape {tuple(input_shape)}."
            )
        if input_shape[-1] < 1:
            raise ValueError(
                f"{type(self).__name__} needs at least one channel; received "
                f"`inputs` of shape {tuple(input_shape)}."
            )

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        if "float" not in str(inputs.dtype):
            raise TypeError(
                f"{type(self).__name__} expects float `inputs`; received dtype "
                f"{inputs.dtype}."
            )
        linear, max_gain, coincidence = self.gains()
        if training:
            return neuron_response(
                inputs,
                linear,
                max_gain,
                coincidence,
                trainable_gains=self.trainable_gains and self.trainable,
            )
        # Inference (and export) takes the plain forward graph, with no
        # custom-gradient wrapper in it.
        return _forward(inputs, linear, max_gain, coincidence)[0]

    def compute_output_shape(self, input_shape):
        return input_shape
