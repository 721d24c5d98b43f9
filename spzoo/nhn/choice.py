"""`Choice`: a weighted sum of branch tensors by a fixed (assigned) vector."""

import keras


@keras.saving.register_keras_serializable(package="spzoo")
class Choice(keras.layers.Layer):
    """`sum_j c[j] t_j` over the input tensors `t_j`, `c` a fixed variable.

    A weight-sharing supernet switches candidates by assigning `choice`
    (e.g. a 0/1 vector picks one branch); it never trains.

    Args:
        size: Number of input tensors (the length of `c`).
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def build(self, input_shape):
        self.choice = self.add_weight(
            name="choice", shape=(self.size,), initializer="zeros", trainable=False
        )

    def call(self, inputs):
        # In the inputs' dtype: under mixed precision they are float16.
        choice = keras.ops.cast(self.choice, inputs[0].dtype)
        return sum(choice[j] * t for j, t in enumerate(inputs))

    def get_config(self):
        return {**super().get_config(), "size": self.size}
