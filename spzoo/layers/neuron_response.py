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


def _response(x, linear, max_gain, coincidence):
    return _forward(x, linear, max_gain, coincidence)[0]


def _neighbour_gate(t):
    """`g = ReLU(tanh(x2))` from `t = tanh(x)`: the shift commutes with tanh."""
    return ops.relu(shift(t))


def _input_gradient(upstream, x, t, linear, max_gain, coincidence):
    """`d loss / d x` from `t = tanh(x)`, select-free.

    d y / d x1 is the slope itself (y is linear in x1 on either side of 0);
    d y / d g = x1 * where(x1 > 0, coincidence, -max) = coincidence *
    ReLU(x1) - max * min(x1, 0); and d g / d x2 = (1 - tanh(x2)^2) where
    tanh(x2) > 0. The neighbour term of position q comes from position
    q - 1, whose x2 is x[q]: `unshift(d y / d g) * (1 - t^2) * (t > 0)`.
    Masks are multiplications by `(x > 0)`, not selects: XLA's CPU
    emitter vectorises those loops better.
    """
    g = _neighbour_gate(t)
    positive = ops.cast(ops.greater(x, 0), x.dtype)
    slope = positive * (linear + coincidence * g) + (positive - 1.0) * (max_gain * g)
    d_g = upstream * (coincidence * ops.relu(x) - max_gain * ops.minimum(x, 0.0))
    d_tanh = (1.0 - t * t) * ops.cast(ops.greater(t, 0), t.dtype)
    return upstream * slope + unshift(d_g) * d_tanh


# Parts of the batch a gain product is folded into before its channel sums.
FOLD = 4


def _fold_sum(p, parts=FOLD):
    """Adds `parts` slices of the batch: `(N, ...) -> (ceil(N / parts), ...)`.

    Written as a reduction over a leading axis of size `parts`, which XLA's
    CPU emitter unrolls and vectorises along the channels; a reduction over
    all positions at once is emitted as strided scalar loads and runs
    several times slower. A batch that `parts` does not divide is padded
    with zero examples. Four parts write and re-read half of what two do:
    timed alone (process CPU time, the three products and their sums, on a
    machine busy with a training) they took 10-40% less than two at each
    ResNet 3-16 layer shape (128x32x32x16, 128x16x16x32, 128x8x8x64); eight
    took more. The whole-step effect is `bench/neuron_overhead.py`'s to say.
    """
    n = p.shape[0]
    if n is None:
        n = ops.shape(p)[0]
    pad = (-n) % parts
    if not isinstance(n, int) or pad:
        p = ops.pad(p, [[0, pad]] + [[0, 0]] * (len(p.shape) - 1))
    return ops.sum(ops.reshape(p, (parts, -1, *p.shape[1:])), axis=0)


def _gain_product(index):
    """Returns the kernel of one gain's per-element products, folded.

    The three gains' gradients are the per-channel sums of `upstream *
    ReLU(x1)` (linear), `upstream * ReLU(-x1) * g` (max) and `upstream *
    ReLU(x1) * g` (coincidence), folded by `_fold_sum`. One kernel per
    product: XLA's CPU backend compiles sibling outputs as separate loops
    anyway, and a stacked output runs slower than three.
    """

    def product(upstream, x, t):
        g = _neighbour_gate(t)
        linear = upstream * ops.relu(x)
        if index == 0:
            return _fold_sum(linear)
        if index == 1:
            return _fold_sum(-(upstream * ops.minimum(x, 0.0)) * g)
        return _fold_sum(linear * g)

    return product


def _channel_sums(linear, max_gain, coincidence):
    axes = tuple(range(len(linear.shape) - 1))
    return tuple(ops.sum(p, axis=axes) for p in (linear, max_gain, coincidence))


def _fuse(fn):
    """Compiles `fn` into one XLA kernel on the TensorFlow backend.

    Only the element-wise neuron maths is compiled; the convolutions around
    it keep TensorFlow's (oneDNN) kernels, which on CPU are faster than
    XLA's. Each compiled function has one output: XLA's CPU backend does
    not fuse sibling loops with different outputs, nor element-wise
    producers into a reduction efficiently, so every output is its own
    kernel and reductions read materialised products (see
    bench/neuron_overhead.py).
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    # No AutoGraph: the kernels hold no tensor-dependent Python control
    # flow, so there is nothing to convert (AutoGraph would re-read their
    # source from disk at trace time).
    return tf.function(fn, jit_compile=True, autograph=False)


_fused_response = _fuse(_response)
_fused_input_gradient = _fuse(_input_gradient)
_fused_products = tuple(_fuse(_gain_product(i)) for i in range(3))
_fused_channel_sums = _fuse(_channel_sums)


def _backward(upstream, x, linear, max_gain, coincidence):
    # tanh runs as a standalone op: TensorFlow's (and XLA's unfused) tanh is
    # vectorised, the fused CPU kernels evaluate it about 3x slower.
    t = ops.tanh(x)
    return t, _fused_input_gradient(upstream, x, t, linear, max_gain, coincidence)


def _backward_with_gains(upstream, x, linear, max_gain, coincidence):
    t, dx = _backward(upstream, x, linear, max_gain, coincidence)
    products = [fused(upstream, x, t) for fused in _fused_products]
    d_linear, d_max, d_coincidence = _fused_channel_sums(*products)
    return dx, d_linear, d_max, d_coincidence


def neuron_response(x, linear, max_gain, coincidence, trainable_gains=False):
    """Computes the mixed neuron response of the module docstring.

    The forward pass is one fused kernel (XLA on the TensorFlow backend);
    the hand-written gradient is a few (`tanh`, the input gradient, and for
    trainable gains three products and their per-channel sums). 16-bit
    inputs (mixed precision) are computed in float32: XLA's CPU kernels
    emulate bfloat16 and float16 arithmetic element by element (a
    `mixed_bfloat16` SP-ResNet step took 2.7 s against 1.6 s with ReLU), so
    the input is cast by the backend's vectorised cast outside the kernels
    and the result cast back.
    Use it for training; inference and export take the plain graph of
    `_forward`.

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
    if keras.backend.standardize_dtype(x.dtype) in ("bfloat16", "float16"):
        y = neuron_response(
            ops.cast(x, "float32"),
            linear,
            max_gain,
            coincidence,
            trainable_gains=trainable_gains,
        )
        return ops.cast(y, x.dtype)
    linear, max_gain, coincidence = (
        ops.cast(ops.convert_to_tensor(v), x.dtype)
        for v in (linear, max_gain, coincidence)
    )

    if trainable_gains:

        @ops.custom_gradient
        def _trainable(x, linear, max_gain, coincidence):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return _backward_with_gains(upstream, x, linear, max_gain, coincidence)

            return _fused_response(x, linear, max_gain, coincidence), grad

        return _trainable(x, linear, max_gain, coincidence)

    @ops.custom_gradient
    def _fixed(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _backward(upstream, x, linear, max_gain, coincidence)[1]

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
