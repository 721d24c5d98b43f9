"""SGD with the coupled (L2) weight decay of the papers' frameworks."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="spzoo")
class CoupledDecaySGD(keras.optimizers.SGD):
    """SGD with momentum whose weight decay is added to the gradient.

    The papers' "weight decay 5e-4" with SGD momentum 0.9 is the coupled form
    of their frameworks (Caffe, PyTorch `SGD(weight_decay=)`, TF1
    `l2_regularizer`): every decayed variable `w` gets `g + wd * w` as its
    gradient, which then passes through momentum and the learning rate:

    ```
    v = momentum * v - lr * (g + wd * w)
    w = w + v
    ```

    Keras's own `weight_decay=` is decoupled (`w -= lr * wd * w` beside the
    momentum update, as in AdamW/SGDW), which at momentum 0.9 is about 10x
    weaker. Variables excluded with `exclude_from_weight_decay` (batch-norm
    parameters, biases, the neuron-mixture logits `w_TL`) are not decayed.
    Gradient clipping (`global_clipnorm`, `clipnorm`) applies to the
    gradient of the loss, before the decay term is added, as in PyTorch's
    `clip_grad_norm_` followed by `SGD.step`.

    Args:
        learning_rate: A float or a `LearningRateSchedule`.
        momentum: Momentum, `>= 0`.
        nesterov: Whether to use Nesterov momentum.
        coupled_weight_decay: The L2 coefficient `wd` (`>= 0`).
        **kwargs: Other `keras.optimizers.Optimizer` arguments (`clipnorm`,
            `global_clipnorm`, `use_ema`, ...). `weight_decay` is refused:
            it would add Keras's decoupled decay on top.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        coupled_weight_decay: float = 0.0,
        **kwargs,
    ):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "`CoupledDecaySGD` takes `coupled_weight_decay`; received "
                f"`weight_decay={kwargs['weight_decay']!r}` (Keras's decoupled form)."
            )
        kwargs.pop("weight_decay", None)
        try:
            coupled_weight_decay = float(coupled_weight_decay)
        except (TypeError, ValueError):
            coupled_weight_decay = float("nan")
        if not math.isfinite(coupled_weight_decay) or coupled_weight_decay < 0:
            raise ValueError(
                "`coupled_weight_decay` must be a finite number >= 0; received "
                f"{coupled_weight_decay!r}."
            )
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs
        )
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        if self.coupled_weight_decay > 0 and self._use_weight_decay(variable):
            gradient = gradient + ops.cast(
                self.coupled_weight_decay, variable.dtype
            ) * ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        config = super().get_config()
        config["coupled_weight_decay"] = self.coupled_weight_decay
        return config
