"""The pre-synaptic path of the inhibition cell as its own layer, and the gate product.

`InhibitionConv2D` gates the output of its own convolution. In a network
whose convolutions are followed by batch norm and a neuron layer (the
ResNets of Lee & Wang: BN -> neuron -> conv), a channel gated to zero there
does not stay zero: batch norm adds its shift, so the next convolution
still reads it. The block gate of `spzoo.blocks.residual_block(gate=...)`
splits the cell in two layers instead:

```
h = neuron1(bn1(x))                   the first convolution's input
z = PresynapticGate(C)(h)             pre-synaptic gate, before the conv
a = neuron2(bn2(conv1(h)))            C channels
y = conv2(ChannelGate()([a, z]))      a * z: a closed channel is exactly 0
```

A channel with `z = 0` needs neither its output of `conv1` nor its input
of `conv2`: both convolutions shrink with the number of open gates, while
the residual stream keeps its width.
"""

import math

import numpy as np
from keras import initializers, layers, ops, saving

from spzoo.layers.hard_concrete_gate import (
    HardConcreteGate,
    check_sparsity_weight,
    check_threshold,
)


@saving.register_keras_serializable(package="spzoo")
class PresynapticGate(layers.Layer):
    """Hard-concrete channel gates computed from a convolution's input.

    `log_alpha = s * (mean_hw(x) @ W + b)` for `input_dependent=True` (a
    linear projection of the spatially pooled input, `C_in * C` MACs), else
    `log_alpha = s * b`, the same gates for every input (no data path).
    The gates are `HardConcreteGate(log_alpha)`: noisy in training, at
    inference the deterministic estimator, exactly zero below the
    threshold on log-alpha (a run-time value: the `threshold` call
    argument, a `threshold_scope`, or `set_threshold(model, t)`).

    Call: `z = gate(x)`, `x` of shape `(B, H, W, C_in)`, `z` of shape
    `(B, filters)` in `[0, 1]`.

    Args:
        filters: Number of gates `C` (the channels of the gated convolution).
        input_dependent: Whether log-alpha depends on the input.
        sparsity_weight: Weight (>= 0) of the expected-L0 loss added on
            every call: `sparsity_weight * mean_c(P(z_c != 0))`, or with
            `costs`, `sparsity_weight * sum_c(P(z_c != 0) * costs_c) /
            cost_scale` (the expected MACs of the gated channels over
            `cost_scale`).
        costs: Optional per-gate costs (e.g. the MACs per example that an
            open channel costs), so that the L0 loss is the expected cost.
        cost_scale: Divisor of the cost-weighted loss (default
            `sum(costs)`; `spzoo.models` sets the model's total MACs, so the
            losses of all gates add up to the expected fraction of the
            network's MACs that the open channels cost).
        initial_log_alpha: Initial log-alpha of every gate (2.0: open with
            probability 0.97).
        log_alpha_scale: Positive factor `s` on the parameters, so that
            log-alpha moves `s` times faster than the other weights.
        threshold: Initial threshold on log-alpha (`None`: no threshold).
        gamma: Hard-concrete stretch lower end (< 0).
        zeta: Hard-concrete stretch upper end (> 1).
        beta: Hard-concrete temperature (> 0).
        seed: Seed of the gates' noise.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        filters,
        input_dependent=True,
        sparsity_weight=0.0,
        initial_log_alpha=2.0,
        log_alpha_scale=1.0,
        threshold=None,
        gamma=-0.1,
        zeta=1.1,
        beta=2.0 / 3.0,
        seed=None,
        costs=None,
        cost_scale=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be an int >= 1; received {filters!r}.")
        if isinstance(initial_log_alpha, bool) or not (
            isinstance(initial_log_alpha, int | float)
            and math.isfinite(initial_log_alpha)
        ):
            raise ValueError(
                "`initial_log_alpha` must be a finite number; "
                f"received {initial_log_alpha!r}."
            )
        if isinstance(log_alpha_scale, bool) or not (
            isinstance(log_alpha_scale, int | float)
            and math.isfinite(log_alpha_scale)
            and log_alpha_scale > 0
        ):
            raise ValueError(
                "`log_alpha_scale` must be a finite number > 0; "
                f"received {log_alpha_scale!r}."
            )
        self.filters = int(filters)
        if costs is not None:
            costs = [float(c) for c in costs]
            if len(costs) != self.filters or not all(
                math.isfinite(c) and c >= 0 for c in costs
            ):
                raise ValueError(
                    f"`costs` must hold {self.filters} finite numbers >= 0; "
                    f"received {len(costs)} values."
                )
        if cost_scale is not None and not (
            isinstance(cost_scale, int | float)
            and math.isfinite(cost_scale)
            and cost_scale > 0
        ):
            raise ValueError(
                f"`cost_scale` must be a finite number > 0; received {cost_scale!r}."
            )
        self.costs = costs
        self.cost_scale = None if cost_scale is None else float(cost_scale)
        self.input_dependent = bool(input_dependent)
        self.sparsity_weight = check_sparsity_weight(sparsity_weight)
        self.initial_log_alpha = float(initial_log_alpha)
        self.log_alpha_scale = float(log_alpha_scale)
        self.seed = seed
        self.gate = HardConcreteGate(
            gamma=gamma,
            zeta=zeta,
            beta=beta,
            threshold=threshold,
            seed=seed,
            dtype=self.dtype_policy,
            name="presynaptic_gate",
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "`PresynapticGate` expects inputs of shape (batch, height, "
                f"width, channels) with known channels; received {input_shape}."
            )
        self._gate_input_shape = tuple(input_shape)
        if self.input_dependent:
            self.presynaptic_kernel = self.add_weight(
                shape=(input_shape[-1], self.filters),
                name="presynaptic_kernel",
                initializer="zeros",
            )
        # Named `..._bias` in both modes: training recipes exclude biases
        # from weight decay, which would pull log-alpha towards 0.
        self.presynaptic_bias = self.add_weight(
            shape=(self.filters,),
            name="presynaptic_bias",
            initializer=initializers.Constant(
                self.initial_log_alpha / self.log_alpha_scale
            ),
        )
        self.gate.build((input_shape[0], self.filters))
        self.built = True

    @property
    def is_static(self) -> bool:
        """Whether the gates are the same for every input."""
        return not self.input_dependent

    def log_alpha(self, inputs):
        """Log-alpha of each gate, shape `(B, filters)`, for the input batch."""
        dtype = self.compute_dtype
        bias = ops.cast(self.presynaptic_bias, dtype)
        if not self.input_dependent:
            zeros = ops.zeros((ops.shape(inputs)[0], 1), dtype=dtype)
            return zeros + self.log_alpha_scale * bias[None, :]
        pooled = ops.mean(ops.cast(inputs, dtype), axis=(1, 2))
        projected = ops.matmul(pooled, ops.cast(self.presynaptic_kernel, dtype))
        return self.log_alpha_scale * (projected + bias)

    def static_log_alpha(self) -> np.ndarray:
        """The log-alpha vector `(filters,)` of input-independent gates."""
        if self.input_dependent:
            raise ValueError(
                f"Layer {self.name!r} has input-dependent gates; "
                "`static_log_alpha` needs `input_dependent=False`."
            )
        bias = np.asarray(ops.convert_to_numpy(self.presynaptic_bias), "float32")
        return (np.float32(self.log_alpha_scale) * bias).astype("float32")

    def static_gate(self, threshold=None) -> np.ndarray:
        """The inference gate `(filters,)` of input-independent gates at
        `threshold` (default: the gate's own threshold)."""
        log_alpha = ops.convert_to_tensor(self.static_log_alpha())
        gate = self.gate.deterministic(log_alpha, check_threshold(threshold))
        return np.asarray(ops.convert_to_numpy(gate), "float32")

    def l0_weights(self) -> np.ndarray:
        """The weight of each gate's `P(z != 0)` in the L0 loss."""
        if self.costs is None:
            return np.full(self.filters, 1.0 / self.filters, "float32")
        costs = np.asarray(self.costs, "float64")
        scale = self.cost_scale or float(costs.sum()) or 1.0
        return (costs / scale).astype("float32")

    def call(self, inputs, training=None, threshold=None):
        log_alpha = self.log_alpha(inputs)
        if self.sparsity_weight > 0:
            penalty = self.gate.l0_penalty(ops.cast(log_alpha, "float32"))
            weights = ops.convert_to_tensor(self.l0_weights())
            expected = ops.sum(ops.mean(penalty, axis=0) * weights)
            self.add_loss(self.sparsity_weight * expected)
        return self.gate(
            log_alpha, training=training, threshold=check_threshold(threshold)
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters)

    def macs(self) -> int:
        """MACs of the gate's projection on one example (0 when static)."""
        if not self.input_dependent:
            return 0
        return int(self._gate_input_shape[-1] * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "input_dependent": self.input_dependent,
                "sparsity_weight": self.sparsity_weight,
                "initial_log_alpha": self.initial_log_alpha,
                "log_alpha_scale": self.log_alpha_scale,
                "threshold": self.gate.get_threshold(),
                "gamma": self.gate.gamma,
                "zeta": self.gate.zeta,
                "beta": self.gate.beta,
                "seed": self.seed,
                "costs": self.costs,
                "cost_scale": self.cost_scale,
            }
        )
        return config


@saving.register_keras_serializable(package="spzoo")
class ChannelGate(layers.Layer):
    """Multiplies feature maps by per-example channel gates.

    Call: `y = ChannelGate()([x, z])` with `x` of shape `(B, H, W, C)` and
    `z` of shape `(B, C)`: `y = x * z[:, None, None, :]`. A channel whose
    gate is 0 is exactly zero in `y`, so the convolution that reads `y`
    skips that input channel.
    """

    def build(self, input_shape):
        x_shape, z_shape = input_shape
        if len(x_shape) != 4 or len(z_shape) != 2 or x_shape[-1] != z_shape[-1]:
            raise ValueError(
                "`ChannelGate` expects `[x, z]` of shapes (batch, height, width, "
                f"C) and (batch, C); received {x_shape} and {z_shape}."
            )
        self.built = True

    def call(self, inputs):
        x, z = inputs
        return x * ops.cast(z, x.dtype)[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]
