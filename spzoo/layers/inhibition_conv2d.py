"""The inhibition/excitation convolution cell: a convolution with L0 channel gates."""

import math

import numpy as np
from keras import activations, initializers, layers, ops, regularizers, saving

from spzoo.layers.hard_concrete_gate import (
    HardConcreteGate,
    check_sparsity_weight,
    check_threshold,
)

COMBINATIONS = ("inhibition", "excitation")


@saving.register_keras_serializable(package="spzoo")
class InhibitionConv2D(layers.Layer):
    """A 2D convolution whose output channels are gated per example.

    The convolution cell of the inhibition/excitation paper: the output
    `a = activation(conv(x) + b)` (shape `(B, H, W, C)`) is multiplied per
    example and channel by a gate `g` in `[0, 2]` built from two paths of
    hard-concrete gates (`HardConcreteGate`):

    - pre-synaptic path, from the cell's input, computed before the
      convolution: `log_alpha_pre = s * (mean_hw(x) @ W_pre + b_pre)` (a linear
      projection of the spatially pooled input, `C_in * C` MACs), or, with
      `input_dependent=False`, a learned per-channel `log_alpha_pre` with no
      data path (the same gates for every input);
    - post-synaptic path, from the convolution's output:
      `log_alpha_post = s * (mean_hw(a) @ W_post + b_post)`.

    `z_pre = HardConcrete(log_alpha_pre)`, `z_post = HardConcrete(log_alpha_post)`
    and the paths combine as (`combination`):

    ```
    inhibition:  g = z_pre * z_post         (each path can only silence)
    excitation:  g = z_pre * (1 + z_post)   (the output path can only amplify)
    y = g[:, None, None, :] * a
    ```

    with a switched-off path left out (`z_pre = 1`; under inhibition
    `z_post = 1`, under excitation `z_post = 0`). Because the pre-synaptic
    gate multiplies every term, a channel whose `z_pre` is 0 needs no
    convolution at all: `needed_macs` reports, per example, the MACs the
    cell actually needs. With `activation` applied before the gate, a
    silenced channel is exactly zero in the output, so a following layer
    also skips it (see `spzoo.metrics.macs`).

    Training samples noisy gates; inference uses the deterministic gates,
    exactly zero where log-alpha is below the threshold (see
    `HardConcreteGate`). The threshold is a run-time value: the
    `threshold` call argument, a `threshold_scope`, or the gates'
    threshold variables (`set_threshold(model, t)`).

    Each active path adds `sparsity_weight * mean(P(z != 0))` to the losses.

    Args:
        filters: Output channels `C`.
        kernel_size: Int or pair, the convolution window.
        strides: Int or pair.
        padding: `"valid"` or `"same"`.
        dilation_rate: Int or pair.
        activation: Activation applied to the convolution before gating.
        use_bias: Whether the convolution has a bias.
        kernel_initializer: Initializer of the convolution kernel.
        bias_initializer: Initializer of the convolution bias.
        kernel_regularizer: Regularizer of the convolution kernel.
        presynaptic: Whether the pre-synaptic (input) path is on.
        postsynaptic: Whether the post-synaptic (output) path is on.
        input_dependent: If False, the pre-synaptic log-alpha is a learned
            per-channel vector with no data path.
        combination: `"inhibition"` or `"excitation"` (see above).
        sparsity_weight: Weight (>= 0) of the expected-L0 loss of each path.
        initial_log_alpha: Initial log-alpha of every gate; at 2.0 a gate
            is non-zero with probability 0.97 at the start.
        log_alpha_scale: Positive factor `s` on each path's parameters,
            `log_alpha = s * (mean_hw(x) @ W + b)`: with an adaptive
            optimiser (Adam), log-alpha then moves `s` times faster than the
            convolution's weights (as `weight_scale` of the trainable neuron
            layer speeds up its choice).
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
        kernel_size,
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        presynaptic=True,
        postsynaptic=False,
        input_dependent=True,
        combination="inhibition",
        sparsity_weight=0.0,
        initial_log_alpha=2.0,
        log_alpha_scale=1.0,
        threshold=None,
        gamma=-0.1,
        zeta=1.1,
        beta=2.0 / 3.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not (presynaptic or postsynaptic):
            raise ValueError(
                "At least one gate path must be on: `presynaptic` and "
                "`postsynaptic` are both False."
            )
        if combination not in COMBINATIONS:
            raise ValueError(
                f"`combination` must be one of {COMBINATIONS}; "
                f"received {combination!r}."
            )
        if not input_dependent and not presynaptic:
            raise ValueError(
                "`input_dependent=False` applies to the pre-synaptic path; "
                "set `presynaptic=True`."
            )
        if not (
            isinstance(initial_log_alpha, int | float)
            and math.isfinite(initial_log_alpha)
        ):
            raise ValueError(
                "`initial_log_alpha` must be a finite number; "
                f"received {initial_log_alpha!r}."
            )
        if not (
            isinstance(log_alpha_scale, int | float)
            and log_alpha_scale > 0
            and math.isfinite(log_alpha_scale)
        ):
            raise ValueError(
                "`log_alpha_scale` must be a finite number > 0; "
                f"received {log_alpha_scale!r}."
            )
        self.log_alpha_scale = float(log_alpha_scale)
        self.filters = filters
        self.presynaptic = bool(presynaptic)
        self.postsynaptic = bool(postsynaptic)
        self.input_dependent = bool(input_dependent)
        self.combination = combination
        self.sparsity_weight = check_sparsity_weight(sparsity_weight)
        self.initial_log_alpha = float(initial_log_alpha)
        self.seed = seed
        self.activation = activations.get(activation)
        self.conv = layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            dtype=self.dtype_policy,
            name="conv",
        )
        gate_kwargs = dict(
            gamma=gamma,
            zeta=zeta,
            beta=beta,
            threshold=threshold,
            sparsity_weight=sparsity_weight,
            dtype=self.dtype_policy,
        )
        self.presynaptic_gate = (
            HardConcreteGate(seed=seed, name="presynaptic_gate", **gate_kwargs)
            if self.presynaptic
            else None
        )
        self.postsynaptic_gate = (
            HardConcreteGate(
                seed=None if seed is None else seed + 1,
                name="postsynaptic_gate",
                **gate_kwargs,
            )
            if self.postsynaptic
            else None
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`InhibitionConv2D` expects inputs of shape (batch, height, "
                f"width, channels); received {input_shape}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("The channel dimension of the inputs must be known.")
        self.conv.build(input_shape)
        self._cell_input_shape = tuple(input_shape)
        initial = initializers.Constant(self.initial_log_alpha / self.log_alpha_scale)
        if self.presynaptic and self.input_dependent:
            self.presynaptic_kernel = self.add_weight(
                shape=(channels, self.filters),
                name="presynaptic_kernel",
                initializer="zeros",
            )
            self.presynaptic_bias = self.add_weight(
                shape=(self.filters,), name="presynaptic_bias", initializer=initial
            )
        elif self.presynaptic:
            self.log_alpha = self.add_weight(
                shape=(self.filters,), name="log_alpha", initializer=initial
            )
        for gate in (self.presynaptic_gate, self.postsynaptic_gate):
            if gate is not None:
                gate.build((input_shape[0], self.filters))
        if self.postsynaptic:
            self.postsynaptic_kernel = self.add_weight(
                shape=(self.filters, self.filters),
                name="postsynaptic_kernel",
                initializer="zeros",
            )
            self.postsynaptic_bias = self.add_weight(
                shape=(self.filters,), name="postsynaptic_bias", initializer=initial
            )
        self.built = True

    def presynaptic_log_alpha(self, inputs):
        """`log_alpha_pre`, shape `(B, C)`, from the cell's input."""
        if not self.presynaptic:
            raise ValueError(f"Layer {self.name!r} has no pre-synaptic path.")
        inputs = ops.cast(inputs, self.compute_dtype)
        if not self.input_dependent:
            zeros = ops.zeros((ops.shape(inputs)[0], 1), dtype=self.compute_dtype)
            log_alpha = ops.cast(self.log_alpha, self.compute_dtype)[None, :]
            return zeros + self.log_alpha_scale * log_alpha
        return self._project(inputs, self.presynaptic_kernel, self.presynaptic_bias)

    def _project(self, tensor, kernel, bias):
        """`s * (mean_hw(tensor) @ kernel + bias)`."""
        pooled = ops.mean(tensor, axis=(1, 2))
        projected = ops.matmul(pooled, ops.cast(kernel, pooled.dtype))
        return self.log_alpha_scale * (projected + ops.cast(bias, pooled.dtype))

    def postsynaptic_log_alpha(self, outputs):
        """`log_alpha_post`, shape `(B, C)`, from the activated conv output."""
        if not self.postsynaptic:
            raise ValueError(f"Layer {self.name!r} has no post-synaptic path.")
        return self._project(outputs, self.postsynaptic_kernel, self.postsynaptic_bias)

    def _forward(self, inputs, training, threshold):
        """Returns `(outputs, z_pre, gate)`; `z_pre` is None without that path."""
        threshold = check_threshold(threshold)
        z_pre = None
        if self.presynaptic:
            z_pre = self.presynaptic_gate(
                self.presynaptic_log_alpha(inputs),
                training=training,
                threshold=threshold,
            )
        outputs = self.conv(ops.cast(inputs, self.compute_dtype))
        outputs = self.activation(outputs)
        gate = z_pre
        if self.postsynaptic:
            z_post = self.postsynaptic_gate(
                self.postsynaptic_log_alpha(outputs),
                training=training,
                threshold=threshold,
            )
            if self.combination == "excitation":
                z_post = 1.0 + z_post
            gate = z_post if gate is None else gate * z_post
        return outputs * gate[:, None, None, :], z_pre, gate

    def call(self, inputs, training=None, threshold=None):
        return self._forward(inputs, training, threshold)[0]

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def channel_activity(self, inputs, threshold=None):
        """Which output channels are computed and which are non-zero.

        Runs the cell at inference on `inputs` (a batch of its input).

        Returns:
            `(computed, active)`, float 0/1 tensors of shape `(B, C)`:
            `computed` marks the channels whose convolution is needed
            (`z_pre > 0`, all ones without a pre-synaptic path), `active`
            the channels whose output is not gated to zero.
        """
        _, z_pre, gate = self._forward(inputs, False, threshold)
        active = ops.cast(ops.greater(gate, 0.0), "float32")
        if z_pre is None:
            return ops.ones_like(active), active
        return ops.cast(ops.greater(z_pre, 0.0), "float32"), active

    def _shape_for_macs(self, input_shape=None):
        input_shape = tuple(input_shape or self._cell_input_shape)
        out = self.compute_output_shape(input_shape)
        if any(d is None for d in out[1:3]):
            raise ValueError(
                f"MACs of layer {self.name!r} need a known spatial size; "
                f"input shape {input_shape}."
            )
        return input_shape, out

    def channel_macs(self, input_shape=None) -> int:
        """MACs of the convolution of one output channel on one example:
        `H_out * W_out * k_h * k_w * C_in`."""
        input_shape, out = self._shape_for_macs(input_shape)
        kh, kw = self.conv.kernel_size
        return int(out[1] * out[2] * kh * kw * input_shape[-1])

    def path_macs(self, input_shape=None) -> tuple[int, int]:
        """MACs of the gate projections `(pre, post)` on one example, all
        channels on: `C_in * C` (input-dependent pre path) and `C * C`."""
        input_shape, _ = self._shape_for_macs(input_shape)
        pre = (
            input_shape[-1] * self.filters
            if (self.presynaptic and self.input_dependent)
            else 0
        )
        post = self.filters * self.filters if self.postsynaptic else 0
        return int(pre), int(post)

    def macs(self) -> int:
        """Static MACs on one example with every channel computed."""
        pre, post = self.path_macs()
        return self.channel_macs() * self.filters + pre + post

    def needed_macs(self, inputs, threshold=None, input_fraction=None):
        """MACs the cell needs for each example of `inputs`, shape `(B,)`.

        ```
        n = number of channels with z_pre > 0 (C without a pre path)
        MACs = f_in * (n * channel_macs + pre_path_macs) + n * C (post path)
        ```

        where `f_in` (`input_fraction`, shape `(B,)`, default 1) is the
        fraction of input channels that are non-zero (skipped channels of
        a preceding gated cell).
        """
        computed, _ = self.channel_activity(inputs, threshold)
        return self.macs_of_channels(computed, tuple(inputs.shape), input_fraction)

    def macs_of_channels(self, computed, input_shape=None, input_fraction=None):
        """`needed_macs` from the `computed` mask of `channel_activity`."""
        n = ops.sum(ops.cast(computed, "float32"), axis=-1)
        pre, _ = self.path_macs(input_shape)
        per_channel = self.channel_macs(input_shape)
        if input_fraction is None:
            input_fraction = ops.ones_like(n)
        post = n * self.filters if self.postsynaptic else ops.zeros_like(n)
        return ops.cast(input_fraction, "float32") * (n * per_channel + pre) + post

    def static_gate(self, threshold=None) -> np.ndarray:
        """The inference gate of each channel, for input-independent cells.

        Only defined when the gate does not depend on the input
        (`input_dependent=False`, no post-synaptic path): the channels with
        gate 0 can be removed from the convolution and the gate folded into
        the following weights (a slimmed export).

        Returns:
            A NumPy array of shape `(C,)`.
        """
        if self.input_dependent or self.postsynaptic:
            raise ValueError(
                f"Layer {self.name!r} has input-dependent gates; `static_gate` "
                "needs `input_dependent=False` and `postsynaptic=False`."
            )
        log_alpha = self.log_alpha_scale * ops.cast(self.log_alpha, "float32")
        gate = self.presynaptic_gate.deterministic(log_alpha, threshold)
        return np.asarray(ops.convert_to_numpy(gate))

    def get_config(self):
        config = super().get_config()
        gate = self.presynaptic_gate or self.postsynaptic_gate
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.conv.kernel_size,
                "strides": self.conv.strides,
                "padding": self.conv.padding,
                "dilation_rate": self.conv.dilation_rate,
                "activation": activations.serialize(self.activation),
                "use_bias": self.conv.use_bias,
                "kernel_initializer": initializers.serialize(
                    self.conv.kernel_initializer
                ),
                "bias_initializer": initializers.serialize(self.conv.bias_initializer),
                "kernel_regularizer": regularizers.serialize(
                    self.conv.kernel_regularizer
                ),
                "presynaptic": self.presynaptic,
                "postsynaptic": self.postsynaptic,
                "input_dependent": self.input_dependent,
                "combination": self.combination,
                "sparsity_weight": self.sparsity_weight,
                "initial_log_alpha": self.initial_log_alpha,
                "log_alpha_scale": self.log_alpha_scale,
                "threshold": gate.get_threshold(),
                "gamma": gate.gamma,
                "zeta": gate.zeta,
                "beta": gate.beta,
                "seed": self.seed,
            }
        )
        return config
