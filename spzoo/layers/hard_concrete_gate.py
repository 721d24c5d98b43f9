"""The hard-concrete gate of Louizos et al. (L0 regularisation), with a threshold.

The threshold on log-alpha is a run-time value: a non-trainable scalar
variable per gate (set for a whole model with `set_threshold`), which a
`threshold=` call argument or a `threshold_scope` overrides. Changing the
variable changes the outputs of an already traced (compiled) model without
retracing or rebuilding it. A threshold in force closes gates in training
too (the noisy sample is zeroed below it), so a model can be trained at a
threshold (`spzoo.training.threshold_sampling`); with none, training is
Louizos et al.'s.
"""

import contextlib
import contextvars
import math

import keras
import numpy as np
from keras import layers, ops, saving

# A threshold that applies to every gate called inside `threshold_scope`.
_SCOPE_THRESHOLD = contextvars.ContextVar("spzoo_threshold", default=None)


def check_threshold(threshold, argument: str = "threshold"):
    """Validates a threshold on log-alpha; returns it (a float or a tensor).

    Accepts `None` (no threshold), a Python or NumPy number, or a rank-0
    tensor; `-inf` means "no threshold", `+inf` closes every gate. A NaN or a
    value that is not a scalar raises `ValueError`. Concrete values are
    checked for NaN; a symbolic tensor (inside a traced function) can only
    be checked for its rank.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool | str):
        raise ValueError(
            f"`{argument}` must be a scalar number; received {threshold!r}."
        )
    shape = getattr(threshold, "shape", None)
    if shape is not None and len(shape) != 0:
        raise ValueError(
            f"`{argument}` must be a scalar (rank 0); received shape {tuple(shape)}."
        )
    try:
        value = np.asarray(threshold, dtype="float64")
    except Exception:  # a symbolic tensor: its value is only known at run time
        return threshold
    if value.ndim != 0:
        raise ValueError(
            f"`{argument}` must be a scalar (rank 0); received shape {value.shape}."
        )
    if np.isnan(value):
        raise ValueError(f"`{argument}` must not be NaN.")
    return float(value) if shape is None else threshold


@contextlib.contextmanager
def threshold_scope(threshold):
    """Applies `threshold` to every gate called inside the `with` block.

    The value may be a tensor, e.g. the scalar input of a traced serving
    function, so an exported graph takes the threshold as an input:

    ```python
    @tf.function(input_signature=[image_spec, tf.TensorSpec((), tf.float32)])
    def serve(images, threshold):
        with threshold_scope(threshold):
            return model(images, training=False)
    ```

    A `threshold=` argument passed to a layer's call takes precedence.
    """
    threshold = check_threshold(threshold)
    token = _SCOPE_THRESHOLD.set(threshold)
    try:
        yield
    finally:
        _SCOPE_THRESHOLD.reset(token)


def resolve_threshold(variable, threshold=None):
    """The threshold in force for a layer whose own threshold is `variable`:
    the `threshold` argument, then an enclosing `threshold_scope`, then the
    variable."""
    threshold = check_threshold(threshold)
    if threshold is None:
        threshold = _SCOPE_THRESHOLD.get()
    if threshold is None:
        threshold = variable
    return threshold


def closed_bound(gamma: float = -0.1, zeta: float = 1.1) -> float:
    """`log(-gamma / zeta)`: below this log-alpha the test-time estimator
    `clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)` is already 0,
    so a threshold at or below it closes no further gate (about -2.398 with
    the defaults)."""
    return math.log(-gamma / zeta)


def open_probability(
    log_alpha, gamma: float = -0.1, zeta: float = 1.1, beta: float = 2.0 / 3.0
):
    """`P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))`: the
    probability that a training-time gate is open (Louizos et al., eq. 12;
    the expected L0 norm). NumPy in, NumPy out."""
    log_alpha = np.asarray(log_alpha, dtype="float64")
    return 1.0 / (1.0 + np.exp(-(log_alpha - beta * closed_bound(gamma, zeta))))


def threshold_for_open_probability(
    probability: float,
    gamma: float = -0.1,
    zeta: float = 1.1,
    beta: float = 2.0 / 3.0,
) -> float | None:
    """The log-alpha threshold that closes every gate whose training-time
    probability of being open is below `probability`.

    `t = logit(p) + beta * log(-gamma / zeta)`, the inverse of
    `open_probability`: a threshold with the same meaning for every model
    (with the same gamma, zeta, beta), whatever the scale its log-alphas
    were trained to. `p = 0` gives None (no threshold), `p = 1` `+inf`
    (every gate closed). Thresholds below `closed_bound()` (p below about
    0.31 with the defaults) change nothing at inference: the estimator has
    closed those gates already.

    Args:
        probability: In [0, 1].
        gamma, zeta, beta: The gates' hard-concrete parameters.
    """
    if isinstance(probability, bool) or not (
        isinstance(probability, int | float | np.floating) and 0 <= probability <= 1
    ):
        raise ValueError(
            f"`probability` must be a number in [0, 1]; received {probability!r}."
        )
    if probability == 0:
        return None
    if probability == 1:
        return math.inf
    logit = math.log(probability) - math.log1p(-probability)
    return logit + beta * closed_bound(gamma, zeta)


def find_gates(model_or_layer) -> list:
    """Every `HardConcreteGate` inside a model or layer (nested ones too)."""
    return [
        layer
        for layer in model_or_layer._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, HardConcreteGate)
    ]


def set_threshold(model_or_layer, threshold: float | None) -> int:
    """Sets the run-time threshold of every gate in a model (or layer), and
    of the layers that follow it (`SwitchableBatchNormalization`).

    Assigns the layers' non-trainable `threshold` variables, so a compiled
    `predict`/`evaluate` function sees the new value without retracing.

    Args:
        model_or_layer: A Keras model or layer containing `HardConcreteGate`s.
        threshold: A float; `None` or `-inf` removes the threshold.

    Returns:
        The number of gates set.
    """
    threshold = check_threshold(threshold)
    value = -math.inf if threshold is None else float(threshold)
    gates = find_gates(model_or_layer)
    for layer in model_or_layer._flatten_layers(include_self=True, recursive=True):
        # Gates, and the layers that follow them (switchable batch norm).
        if callable(getattr(layer, "set_threshold", None)) and not isinstance(
            layer, keras.Model
        ):
            layer.set_threshold(value)
    return len(gates)


def get_threshold(model_or_layer) -> float | None:
    """Returns the common threshold of the gates of a model (None if none).

    Raises `ValueError` if the gates hold different thresholds.
    """
    values = {gate.get_threshold() for gate in find_gates(model_or_layer)}
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"The gates hold different thresholds: {sorted(values)}.")
    return values.pop()


class RunTimeThreshold:
    """Layer mixin: a threshold held in a non-trainable scalar variable
    (`threshold`, created by `add_threshold_weight` in `build`), set by
    `set_threshold` and read through `resolve_threshold`. The layer sets
    `initial_threshold` (a float, `-inf` for none) in `__init__`."""

    initial_threshold: float

    def add_threshold_weight(self) -> None:
        self.threshold = self.add_weight(
            shape=(),
            name="threshold",
            initializer=keras.initializers.Constant(self.initial_threshold),
            trainable=False,
            dtype="float32",
        )

    def set_threshold(self, threshold: float | None) -> None:
        """Assigns the threshold variable (`None` for no threshold)."""
        threshold = check_threshold(threshold)
        value = -math.inf if threshold is None else float(threshold)
        if not self.built:
            self.initial_threshold = value
            return
        self.threshold.assign(value)

    def get_threshold(self) -> float | None:
        """Returns the threshold variable's value (`None` for `-inf`)."""
        value = self.initial_threshold
        if self.built:
            value = float(ops.convert_to_numpy(self.threshold))
        return None if value == -math.inf else value


@saving.register_keras_serializable(package="spzoo")
class HardConcreteGate(RunTimeThreshold, layers.Layer):
    """Hard-concrete stochastic gates with an L0 penalty (Louizos et al., 2018).

    The layer maps log-alpha (any shape, one value per gate) to gates `z` in
    `[0, 1]`. In training, with `u ~ U(0, 1)`:

    ```
    s = sigmoid((log(u) - log(1 - u) + log_alpha) / beta)
    z = min(1, max(0, s * (zeta - gamma) + gamma))
    ```

    At inference the gate is deterministic, and exactly zero below the
    threshold `t` on log-alpha:

    ```
    z = min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))  if log_alpha >= t
    z = 0                                                            otherwise
    ```

    (the estimator alone is already 0 for `log_alpha < log(-gamma / zeta)`,
    about -2.4 with the defaults). The expected L0 norm, the probability that
    a gate is non-zero, is

    ```
    P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))
    ```

    and the CDF of `z` on `(0, 1)` is
    `P(z <= q) = sigmoid(beta * log((q - gamma) / (zeta - q)) - log_alpha)`.
    With `sparsity_weight > 0`, the layer adds
    `sparsity_weight * mean(P(z != 0))` to its losses on every call.

    The threshold `t` comes from, in order: the `threshold` call argument, an
    enclosing `threshold_scope`, the layer's non-trainable `threshold`
    variable (see `set_threshold`). It only acts at inference.

    Args:
        gamma: Lower end of the stretch interval (< 0).
        zeta: Upper end of the stretch interval (> 1).
        beta: Temperature of the concrete distribution (> 0).
        threshold: Initial value of the threshold variable; `None` (`-inf`)
            for no threshold.
        sparsity_weight: Weight (>= 0) of the expected-L0 loss.
        seed: Seed of the noise.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        gamma=-0.1,
        zeta=1.1,
        beta=2.0 / 3.0,
        threshold=None,
        sparsity_weight=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not (isinstance(gamma, int | float) and gamma < 0):
            raise ValueError(f"`gamma` must be a number < 0; received {gamma!r}.")
        if not (isinstance(zeta, int | float) and zeta > 1):
            raise ValueError(f"`zeta` must be a number > 1; received {zeta!r}.")
        if not (isinstance(beta, int | float) and beta > 0):
            raise ValueError(f"`beta` must be a number > 0; received {beta!r}.")
        check_sparsity_weight(sparsity_weight)
        threshold = check_threshold(threshold)
        self.gamma = float(gamma)
        self.zeta = float(zeta)
        self.beta = float(beta)
        self.sparsity_weight = float(sparsity_weight)
        self.initial_threshold = -math.inf if threshold is None else float(threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.add_threshold_weight()
        self.built = True

    def l0_penalty(self, log_alpha):
        """`P(z != 0)` for each gate: the expected L0 norm, same shape."""
        log_ratio = self.beta * math.log(-self.gamma / self.zeta)
        return ops.sigmoid(log_alpha - log_ratio)

    def sample(self, log_alpha):
        """Noisy training-time gates (one independent sample per element)."""
        eps = 1e-6
        u = keras.random.uniform(
            ops.shape(log_alpha),
            minval=eps,
            maxval=1.0 - eps,
            dtype=log_alpha.dtype,
            seed=self.seed_generator,
        )
        s = ops.sigmoid((ops.log(u) - ops.log1p(-u) + log_alpha) / self.beta)
        return ops.clip(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def deterministic(self, log_alpha, threshold=None):
        """Inference gates: the estimator, zeroed below the threshold."""
        z = ops.clip(
            ops.sigmoid(log_alpha) * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0
        )
        return self.threshold_mask(z, log_alpha, threshold)

    def resolve_threshold(self, threshold=None):
        """The threshold in force: argument, then scope, then the variable."""
        return resolve_threshold(self.threshold, threshold)

    def call(self, log_alpha, training=None, threshold=None):
        log_alpha = ops.cast(log_alpha, self.compute_dtype)
        if self.sparsity_weight > 0:
            penalty = ops.mean(self.l0_penalty(ops.cast(log_alpha, "float32")))
            self.add_loss(self.sparsity_weight * penalty)
        if training:
            return self.threshold_mask(self.sample(log_alpha), log_alpha, threshold)
        return self.deterministic(log_alpha, threshold)

    def threshold_mask(self, z, log_alpha, threshold=None):
        """`z` zeroed where log-alpha is below the threshold in force."""
        threshold = self.resolve_threshold(threshold)
        keep = ops.greater_equal(log_alpha, ops.cast(threshold, log_alpha.dtype))
        return ops.where(keep, z, ops.zeros_like(z))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "gamma": self.gamma,
                "zeta": self.zeta,
                "beta": self.beta,
                "threshold": self.get_threshold(),
                "sparsity_weight": self.sparsity_weight,
                "seed": self.seed,
            }
        )
        return config


def check_sparsity_weight(sparsity_weight) -> float:
    """Validates a sparsity (L0) loss weight: a finite number >= 0."""
    if (
        isinstance(sparsity_weight, bool)
        or not isinstance(sparsity_weight, int | float | np.floating)
        or not math.isfinite(sparsity_weight)
        or sparsity_weight < 0
    ):
        raise ValueError(
            "`sparsity_weight` must be a finite number >= 0; "
            f"received {sparsity_weight!r}."
        )
    return float(sparsity_weight)
