"""The max neuron."""

from keras import saving

from spzoo.layers.base_neuron import NeuronLayer


@saving.register_keras_serializable(package="spzoo")
class MaxNeuron(NeuronLayer):
    """Max neuron activation layer (Lee & Wang, "Neuron Models").

    The neuron fires when either of its two inputs fires, like a logical OR:

    ```
    y_max = ReLU(x1) + ReLU(-x1) * ReLU(tanh(x2))
    ```

    `x1` is the input and `x2` its neighbour: for rank-4 NHWC inputs
    `x2[:, i, j, c] = x[:, i + 1, j + 1, c]` (one step along H and W), for
    rank-2 inputs `x2[:, k] = x[:, k + 1]` (one step along the features).
    The last row, column or feature has no neighbour and reads 0 there (no
    wrap-around), so on that border the neuron reduces to `ReLU(x1)`.

    The layer has no weights.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def gains(self):
        return 1.0, 1.0, 0.0
