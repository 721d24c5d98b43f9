"""The shared maths of the signal-processing neuron layers.

Every neuron layer of spzoo computes one response, a per-channel mixture of
the three neuron models of Lee & Wang ("Max and Coincidence Neurons in Neural
Networks"):

```
x1 = x                      (the neuron's own input)
x2 = shift(x)               (its neighbour, see `shift`)
g  = ReLU(tanh(x2))         (the smoothed "neighbour fires" signal)

ReLU:         y_relu = ReLU(x1)
max:          y_max  = ReLU(x1) + ReLU(-x1) * g
coincidence:  y_co   = ReLU(x1) * g
```

A mixture `a * y_relu + b * y_max + c * y_co` is rewritten with three gains
per channel,

```
y = linear * ReLU(x1) + max * ReLU(-x1) * g + coincidence * ReLU(x1) * g
  = x1 * where(x1 > 0, linear + coincidence * g, -max * g)
```

with `linear = a + b`, `max = b`, `coincidence = c`. The second form is one
`where` and a handful of element-wise products, and its gradient is written
by hand (`neuron_response`), which keeps these layers close to the cost of a
plain ReLU in training.
"""

from keras import ops


def shift(x):
    """Returns `x2`, the input shifted by one position towards the origin.

    For rank-4 NHWC inputs `x2[:, i, j, :] = x[:, i + 1, j + 1, :]` (one step
    along both spatial axes, H and W); for rank-2 inputs
    `x2[:, k] = x[:, k + 1]` (one step along the feature axis). Positions that
    would read past the last row, column or feature read zero: no
    wrap-around. Since `ReLU(tanh(0)) = 0`, a neuron on that border sees a
    silent neighbour. Built from slice and pad (TFLite has no kernel for the
    `Roll` op that `ops.roll` lowers to).
    """
    if len(x.shape) == 4:
        return ops.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])
    return ops.pad(x[:, 1:], [[0, 0], [0, 1]])


def unshift(dx2):
    """The adjoint of `shift`: routes a gradient on `x2` back onto `x`."""
    if len(dx2.shape) == 4:
        return ops.pad(dx2[:, :-1, :-1, :], [[0, 0], [1, 0], [1, 0], [0, 0]])
    return ops.pad(dx2[:, :-1], [[0, 0], [1, 0]])


def _forward(x, linear, max_gain, coincidence):
    g = ops.relu(ops.tanh(shift(x)))
    positive = ops.greater(x, 0)
    slope = ops.where(
        positive,
        linear + coincidence * g,
        -max_gain * g,
    )
    return x * slope, g, positive, slope


def _input_gradient(upstream, x, g, positive, slope, max_gain, coincidence):
    # d y / d x1 is the slope itself: y is linear in x1 on either side of 0.
    direct = upstream * slope
    # d y / d g = x1 * where(x1 > 0, coincidence, -max), and
    # d g / d x2 = 1 - tanh(x2)^2 where x2 > 0 (i.e. where g > 0), else 0.
    d_g = upstream * x * ops.where(positive, coincidence, -max_gain)
    d_x2 = ops.where(ops.greater(g, 0), d_g * (1.0 - g * g), 0.0)
    return direct + unshift(d_x2)


def neuron_response(x, linear, max_gain, coincidence, trainable_gains=False):
    """Computes the mixed neuron response of the module docstring.

    Args:
        x: A float tensor of rank 2 (batch, features) or rank 4 (NHWC).
        linear: Gain of `ReLU(x1)`, a scalar or a `(channels,)` tensor.
        max_gain: Gain of `ReLU(-x1) * g`, a scalar or `(channels,)` tensor.
        coincidence: Gain of `ReLU(x1) * g`, a scalar or `(channels,)` tensor.
        trainable_gains: Whether gradients must flow into the three gains
            (as for `TrainableNeuronLayer`); if False they are constants.

    Returns:
        A tensor of the same shape and dtype as `x`.
    """
    reduce_axes = tuple(range(len(x.shape) - 1))

    if trainable_gains:

        @ops.custom_gradient
        def _response(x, linear, max_gain, coincidence):
            y, g, positive, slope = _forward(x, linear, max_gain, coincidence)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                dx = _input_gradient(
                    upstream, x, g, positive, slope, max_gain, coincidence
                )
                relu_x = ops.where(positive, x, 0.0)
                xg = upstream * x * g
                d_linear = ops.sum(upstream * relu_x, axis=reduce_axes)
                d_max = ops.sum(ops.where(positive, 0.0, -xg), axis=reduce_axes)
                d_coincidence = ops.sum(ops.where(positive, xg, 0.0), axis=reduce_axes)
                return dx, d_linear, d_max, d_coincidence

            return y, grad

        return _response(x, linear, max_gain, coincidence)

    @ops.custom_gradient
    def _fixed_response(x):
        y, g, positive, slope = _forward(x, linear, max_gain, coincidence)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _input_gradient(
                upstream, x, g, positive, slope, max_gain, coincidence
            )

        return y, grad

    return _fixed_response(x)


def reference_response(x, linear, max_gain, coincidence):
    """The same response built from the paper's formulas, for autodiff.

    `linear * ReLU(x1) + max * ReLU(-x1) * g + coincidence * ReLU(x1) * g`,
    differentiated by the backend. Used by tests and as the naive baseline of
    `bench/neuron_overhead.py`.
    """
    g = ops.relu(ops.tanh(shift(x)))
    return (
        linear * ops.relu(x)
        + max_gain * ops.relu(-x) * g
        + coincidence * ops.relu(x) * g
    )
