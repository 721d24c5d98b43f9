"""The trainable neuron layer (TL) of the growth NAS."""

import numpy as np
from keras import initializers, ops, saving

from spzoo.layers.base_neuron import NeuronLayer

NEURON_TYPES = ("relu", "max", "coincidence")


@saving.register_keras_serializable(package="spzoo")
class TrainableNeuronLayer(NeuronLayer):
    """Trainable neuron layer: a per-channel softmax mixture of neuron types.

    Lee & Wang, Fig. 6b: every channel (neuron) mixes the conventional, max
    and coincidence neurons with its own three weights `w_TL`:

    ```
    y_TL = softmax(weight_scale * w_TL) . [ReLU(x), y_max(x), y_co(x)]
    ```

    with `y_max` and `y_co` as in `MaxNeuron` and `CoincidenceNeuron` (same
    neighbour shift, zero border). A layer on `C` channels holds `3 * C`
    trainable weights, shape `(C, 3)`, columns ordered `(relu, max,
    coincidence)`. The paper scales `w_TL` by 10 during the growth search to
    speed up the choice of neuron type: `weight_scale=10.0`.

    Args:
        weight_scale: Positive factor applied to `w_TL` before the softmax.
        mixture_initializer: Initializer of `w_TL`; zeros (an equal mixture)
            by default.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    trainable_gains = True

    def __init__(self, weight_scale=1.0, mixture_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not weight_scale > 0:
            raise ValueError(
                f"`weight_scale` must be a positive number; received {weight_scale!r}."
            )
        self.weight_scale = float(weight_scale)
        self.mixture_initializer = initializers.get(mixture_initializer)

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        self.mixture_logits = self.add_weight(
            shape=(input_shape[-1], 3),
            name="mixture_logits",
            initializer=self.mixture_initializer,
        )
        self.built = True

    def mixture(self):
        """Returns `softmax(weight_scale * w_TL)` as a `(C, 3)` tensor."""
        return ops.softmax(
            ops.cast(self.mixture_logits, self.compute_dtype) * self.weight_scale,
            axis=-1,
        )

    def gains(self):
        mixture = self.mixture()
        relu, max_, coincidence = mixture[:, 0], mixture[:, 1], mixture[:, 2]
        return relu + max_, max_, coincidence

    def mixture_weights(self):
        """Returns the mixture of each channel as a NumPy `(C, 3)` array."""
        return np.asarray(ops.convert_to_numpy(self.mixture()))

    def neuron_types(self):
        """Returns each channel's dominant neuron type, e.g. `["max", ...]`."""
        return [NEURON_TYPES[i] for i in self.mixture_weights().argmax(axis=-1)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weight_scale": self.weight_scale,
                "mixture_initializer": initializers.serialize(self.mixture_initializer),
            }
        )
        return config
