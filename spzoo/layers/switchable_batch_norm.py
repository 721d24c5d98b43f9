"""Batch normalization with one set of statistics per threshold level.

A gated network evaluated at a threshold that closes half its channels sees
other activation statistics than the one its batch norm gathered with every
channel open; the accuracy at low thresholds collapses for that reason as
much as for the lost channels. Slimmable networks (Yu et al., "Slimmable
Neural Networks", ICLR 2019) give each width its own batch norm
("switchable batch normalization"); universally slimmable networks (Yu and
Huang, ICCV 2019) keep the affine parameters shared and recompute only the
statistics of each width after training ("batch norm calibration").
`SwitchableBatchNormalization` does the latter for the run-time threshold of
the inhibition cells: the levels `t_1 < ... < t_K` cut the threshold axis
into `K + 1` intervals, and the statistics of interval `j` (`t_j <= t <
t_{j+1}`, `t_0 = -inf`) are used for every threshold in it.

The threshold is read as the gates read it (`spzoo.layers.hard_concrete_gate`):
the `threshold` call argument, then an enclosing `threshold_scope`, then the
layer's non-trainable `threshold` variable (`set_threshold` sets it with the
gates'). `calibration_scope` gathers each level's statistics
(`spzoo.training.bn_calibration`).
"""

import contextlib
import contextvars
import math

import numpy as np
from keras import initializers, layers, ops, saving

from spzoo.layers.hard_concrete_gate import (
    RunTimeThreshold,
    check_threshold,
    resolve_threshold,
)

# While set, switchable batch norms normalise with the batch's moments and
# append them to this dict (layer name -> list of (mean, variance)).
_CALIBRATION = contextvars.ContextVar("spzoo_bn_calibration", default=None)


@contextlib.contextmanager
def calibration_scope():
    """Collects the batch moments of every `SwitchableBatchNormalization`
    called eagerly inside the block; yields `{layer name: [(mean, var)]}`.

    Inside the scope the layers normalise with the batch's own moments, as
    in training, while the rest of the model runs in inference mode (the
    gates stay deterministic).
    """
    moments = {}
    token = _CALIBRATION.set(moments)
    try:
        yield moments
    finally:
        _CALIBRATION.reset(token)


def check_levels(levels, argument: str = "levels") -> list[float]:
    """Finite, strictly increasing thresholds; returns them as floats."""
    try:
        values = [float(v) for v in levels]
    except (TypeError, ValueError):
        values = None
    if (
        values is None
        or isinstance(levels, str | bytes)
        or not all(math.isfinite(v) for v in values)
        or any(b <= a for a, b in zip(values, values[1:], strict=False))
    ):
        raise ValueError(
            f"`{argument}` must be a list of finite, strictly increasing "
            f"thresholds; received {levels!r}."
        )
    return values


@saving.register_keras_serializable(package="spzoo")
class SwitchableBatchNormalization(RunTimeThreshold, layers.Layer):
    """Batch normalization over the last axis, with moving statistics per
    threshold level and shared `gamma` and `beta`.

    At inference, with threshold `t` in force and level index
    `j = #{i : levels[i] <= t}`:

    ```
    y = gamma * (x - moving_mean[j]) / sqrt(moving_variance[j] + epsilon) + beta
    ```

    In training (and `trainable`), the batch's moments normalise and update
    row `j` of the moving statistics with `momentum`, as Keras's
    `BatchNormalization` updates its one row.

    Args:
        levels: The thresholds `t_1 < ... < t_K` (finite) at which the
            statistics switch; `[]` gives one row, a plain batch norm.
        momentum: Momentum of the moving statistics.
        epsilon: Added to the variance.
        center: Whether to add `beta`.
        scale: Whether to multiply by `gamma`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer: Initializers (names or objects).
        threshold: Initial value of the threshold variable (`None`: -inf).
        **kwargs: Base layer keyword arguments, such as `name`.
    """

    def __init__(
        self,
        levels=(),
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        threshold=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.levels = check_levels(levels)
        if not (isinstance(momentum, int | float) and 0 <= momentum < 1):
            raise ValueError(
                f"`momentum` must be a number in [0, 1); received {momentum!r}."
            )
        if not (isinstance(epsilon, int | float) and epsilon > 0):
            raise ValueError(f"`epsilon` must be a number > 0; received {epsilon!r}.")
        threshold = check_threshold(threshold)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.initial_threshold = -math.inf if threshold is None else float(threshold)
        self.supports_masking = True

    @property
    def rows(self) -> int:
        """Sets of statistics: `len(levels) + 1`."""
        return len(self.levels) + 1

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                "The last axis of the input of `SwitchableBatchNormalization` "
                f"must be known; received input shape {tuple(input_shape)}."
            )
        self.gamma = (
            self.add_weight(
                shape=(channels,),
                name="gamma",
                initializer=self.gamma_initializer,
                autocast=False,
            )
            if self.scale
            else None
        )
        self.beta = (
            self.add_weight(
                shape=(channels,),
                name="beta",
                initializer=self.beta_initializer,
                autocast=False,
            )
            if self.center
            else None
        )
        self.moving_mean = self.add_weight(
            shape=(self.rows, channels),
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=(self.rows, channels),
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )
        self.add_threshold_weight()
        self.built = True

    def level(self, threshold=None):
        """The level index in force (a scalar int32 tensor)."""
        t = ops.cast(resolve_threshold(self.threshold, threshold), "float32")
        if not self.levels:
            return ops.convert_to_tensor(0, "int32")
        bounds = ops.convert_to_tensor(np.asarray(self.levels, np.float32))
        return ops.sum(ops.cast(ops.greater_equal(t, bounds), "int32"))

    # -- computation --------------------------------------------------
    def call(self, inputs, training=None, mask=None, threshold=None):
        inputs = ops.cast(inputs, "float32")
        axes = list(range(len(inputs.shape) - 1))
        j = self.level(threshold)
        calibration = _CALIBRATION.get()
        if mask is not None and (calibration is not None or training):
            raise ValueError(
                "`SwitchableBatchNormalization` computes batch moments over "
                "every position; received a mask in training or calibration."
            )
        if calibration is not None:
            mean, variance = ops.moments(inputs, axes=axes)
            if not hasattr(mean, "numpy"):
                raise RuntimeError(
                    "`calibration_scope` needs eager calls; call the model "
                    "directly, not inside a traced function."
                )
            calibration.setdefault(self.name, []).append(
                (np.asarray(mean), np.asarray(variance))
            )
        elif training and self.trainable:
            mean, variance = ops.moments(inputs, axes=axes)
            rate = (1.0 - self.momentum) * ops.expand_dims(
                ops.one_hot(j, self.rows, dtype="float32"), -1
            )
            self.moving_mean.assign(
                self.moving_mean + rate * (mean[None] - self.moving_mean)
            )
            self.moving_variance.assign(
                self.moving_variance + rate * (variance[None] - self.moving_variance)
            )
        else:
            mean = ops.take(self.moving_mean, j, axis=0)
            variance = ops.take(self.moving_variance, j, axis=0)
        outputs = ops.batch_normalization(
            inputs,
            mean,
            variance,
            axis=-1,
            offset=self.beta,
            scale=self.gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def affine(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """`(scale, shift)` of level `row`, `y = scale * x + shift` (float64)."""
        if not 0 <= int(row) < self.rows:
            raise ValueError(f"`row` must be in [0, {self.rows}); received {row!r}.")
        mean = np.asarray(self.moving_mean, np.float64)[row]
        var = np.asarray(self.moving_variance, np.float64)[row]
        gamma = np.asarray(self.gamma, np.float64) if self.scale else 1.0
        beta = np.asarray(self.beta, np.float64) if self.center else 0.0
        scale = gamma / np.sqrt(var + self.epsilon)
        shift = beta - mean * scale
        return np.broadcast_to(scale, mean.shape), np.broadcast_to(shift, mean.shape)

    def batch_norm_weights(self, row: int = 0) -> list:
        """The weights of a plain `BatchNormalization` with level `row`'s
        statistics, in its order (gamma, beta, moving mean, variance)."""
        self.affine(row)  # checks `row`
        weights = [np.asarray(self.gamma)] if self.scale else []
        weights += [np.asarray(self.beta)] if self.center else []
        weights += [
            np.asarray(self.moving_mean)[row],
            np.asarray(self.moving_variance)[row],
        ]
        return weights

    def row_for(self, threshold: float | None) -> int:
        """The level index of a concrete threshold (`None`: -inf)."""
        threshold = check_threshold(threshold)
        t = -math.inf if threshold is None else float(np.float32(threshold))
        return int(sum(t >= np.float32(v) for v in self.levels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "levels": list(self.levels),
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(
                    self.moving_mean_initializer
                ),
                "moving_variance_initializer": initializers.serialize(
                    self.moving_variance_initializer
                ),
                "threshold": None
                if self.initial_threshold == -math.inf
                else self.initial_threshold,
            }
        )
        return config


def from_batch_norm(
    bn: layers.BatchNormalization, levels
) -> SwitchableBatchNormalization:
    """A `SwitchableBatchNormalization` with `bn`'s settings and name, every
    level starting from `bn`'s statistics (built, weights copied)."""
    axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    if axis not in (-1, len(bn.input.shape) - 1):
        raise ValueError(
            f"Batch norm {bn.name!r} normalises axis {bn.axis}; switchable "
            "batch norm supports the last axis only."
        )
    layer = SwitchableBatchNormalization(
        levels,
        momentum=bn.momentum,
        epsilon=bn.epsilon,
        center=bn.center,
        scale=bn.scale,
        name=bn.name,
        dtype=bn.dtype_policy,
    )
    layer.build(bn.input.shape)
    if bn.scale:
        layer.gamma.assign(bn.gamma)
    if bn.center:
        layer.beta.assign(bn.beta)
    rows = (layer.rows, 1)
    layer.moving_mean.assign(np.tile(np.asarray(bn.moving_mean)[None], rows))
    layer.moving_variance.assign(np.tile(np.asarray(bn.moving_variance)[None], rows))
    layer.trainable = bn.trainable
    return layer
