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
by hand (`neuron_response`); both run as fused kernels in training.
"""

import keras
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


def _gains_gradient(upstream, x, g, positive):
    reduce_axes = tuple(range(len(x.shape) - 1))
    xg = upstream * x * g
    d_linear = ops.sum(ops.where(positive, upstream * x, 0.0), axis=reduce_axes)
    d_max = ops.sum(ops.where(positive, 0.0, -xg), axis=reduce_axes)
    d_coincidence = ops.sum(ops.where(positive, xg, 0.0), axis=reduce_axes)
    return d_linear, d_max, d_coincidence


def _response(x, linear, max_gain, coincidence):
    return _forward(x, linear, max_gain, coincidence)[0]


def _backward(upstream, x, linear, max_gain, coincidence):
    # Recomputes the forward quantities: inside one fused kernel that is
    # cheaper than keeping g, the sign mask and the slope in memory.
    _, g, positive, slope = _forward(x, linear, max_gain, coincidence)
    return _input_gradient(upstream, x, g, positive, slope, max_gain, coincidence)


def _backward_with_gains(upstream, x, linear, max_gain, coincidence):
    _, g, positive, slope = _forward(x, linear, max_gain, coincidence)
    dx = _input_gradient(upstream, x, g, positive, slope, max_gain, coincidence)
    return (dx, *_gains_gradient(upstream, x, g, positive))


def _fuse(fn):
    """Compiles `fn` into one XLA kernel on the TensorFlow backend.

    Only the element-wise neuron maths is compiled; the convolutions around
    it keep TensorFlow's (oneDNN) kernels, which on CPU are faster than
    XLA's. Fusing turns the dozen element-wise passes of the response and
    its gradient into one pass each (see bench/neuron_overhead.py).
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


_fused_response = _fuse(_response)
_fused_backward = _fuse(_backward)
_fused_backward_with_gains = _fuse(_backward_with_gains)


def neuron_response(x, linear, max_gain, coincidence, trainable_gains=False):
    """Computes the mixed neuron response of the module docstring.

    The forward pass and the hand-written gradient each run as one fused
    kernel (XLA on the TensorFlow backend). Use it for training; inference
    and export take the plain graph of `_forward`.

    Args:
        x: A float tensor of rank 2 (batch, features) or rank 4 (NHWC).
        linear: Gain of `ReLU(x1)`, a scalar or a `(channels,)` tensor.
        max_gain: Gain of `ReLU(-x1) * g`, a scalar or `(channels,)` tensor.
        coincidence: Gain of `ReLU(x1) * g`, a scalar or `(channels,)` tensor.
        trainable_gains: Whether gradients must flow into the three gains
            (as for `TrainableNeuronLayer`, whose gains are `(channels,)`
            tensors); if False they are constants.

    Returns:
        A tensor of the same shape and dtype as `x`.
    """
    dtype = x.dtype
    linear, max_gain, coincidence = (
        ops.cast(ops.convert_to_tensor(v), dtype)
        for v in (linear, max_gain, coincidence)
    )

    if trainable_gains:

        @ops.custom_gradient
        def _trainable(x, linear, max_gain, coincidence):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return _fused_backward_with_gains(
                    upstream, x, linear, max_gain, coincidence
                )

            return _fused_response(x, linear, max_gain, coincidence), grad

        return _trainable(x, linear, max_gain, coincidence)

    @ops.custom_gradient
    def _fixed(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _fused_backward(upstream, x, linear, max_gain, coincidence)

        return _fused_response(x, linear, max_gain, coincidence), grad

    return _fixed(x)


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
