"""Convolutions with a fixed kernel-connection mask, and a neuron mask.

A DNP-pruned or LDS add-on convolution keeps a `(C_in, C_out)` binary
`connection_mask`: the kernel of input neuron `i` into output neuron `o` is
`W[:, :, i, o] * m[i, o]`. The mask is a non-trainable variable, so LDS can
switch add-on locations and directions of a traced model by assigning it.
"""

import keras
import numpy as np
from keras import layers, ops, saving


@saving.register_keras_serializable(package="spzoo")
class MaskedConv2D(layers.Conv2D):
    """`Conv2D` whose kernel is multiplied by a binary connection mask.

    `y[..., o] = sum_i (W[:, :, i, o] m[i, o]) * x[..., i]`.

    Args:
        mask: Initial mask, array-like `(C_in, C_out)` of 0/1 (None: all 1).
        **kwargs: `keras.layers.Conv2D` arguments.
    """

    def __init__(self, *args, mask=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._initial_mask = None if mask is None else np.asarray(mask, "float32")

    def build(self, input_shape):
        super().build(input_shape)
        shape = (int(input_shape[-1]), self.filters)
        if self._initial_mask is not None and self._initial_mask.shape != shape:
            raise ValueError(
                f"`mask` of {self.name} must have shape {shape} (C_in, C_out); "
                f"received {self._initial_mask.shape}."
            )
        init = (
            keras.initializers.Ones()
            if self._initial_mask is None
            else keras.initializers.Constant(self._initial_mask)
        )
        self.connection_mask = self.add_weight(
            name="connection_mask", shape=shape, initializer=init, trainable=False
        )

    def convolution_op(self, inputs, kernel):
        # `where`, not a product: a switched-off weight never leaks (0 * inf).
        return super().convolution_op(
            inputs, ops.where(self.connection_mask > 0, kernel, ops.zeros_like(kernel))
        )

    def save_own_variables(self, store):
        layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        layers.Layer.load_own_variables(self, store)

    def effective_params(self) -> int:
        """Kernel weights of the kept connections (+ bias)."""
        k = int(np.prod(self.kernel_size))
        kept = int(np.sum(keras.ops.convert_to_numpy(self.connection_mask) > 0))
        return k * kept + (self.filters if self.use_bias else 0)

    def get_config(self):
        config = super().get_config()
        config["mask"] = (
            None if self._initial_mask is None else self._initial_mask.tolist()
        )
        return config


@saving.register_keras_serializable(package="spzoo")
class ChannelMask(layers.Layer):
    """Multiplies each channel by a fixed 0/1 value (removed neurons give 0).

    Args:
        mask: Sequence of 0/1, one per channel.
    """

    def __init__(self, mask, **kwargs):
        super().__init__(**kwargs)
        self.mask = [float(v) for v in mask]

    def call(self, inputs):
        return inputs * ops.convert_to_tensor(self.mask, dtype=inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "mask": self.mask}


def effective_params(model: keras.Model) -> int:
    """Parameters that exist in the network: masked kernels count as removed.

    Trainable and batch-norm weights of every layer; a `MaskedConv2D`
    counts only its kept connections; mask variables are not parameters.
    """
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer._layers:
            continue
        if isinstance(layer, MaskedConv2D):
            total += layer.effective_params()
        elif not isinstance(layer, ChannelMask):
            total += layer.count_params()
    return total
