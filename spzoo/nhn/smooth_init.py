"""SmoothInit and the whole-map depthwise pooling of the NHN paper.

NHN paper, Section 2.2 (after "Dynamic network pruning via smooth
initialization"): all 3x3 and 5x5 convolution kernels are smoothed with a
3x3 Gaussian filter after initialisation, and the global average pooling is
replaced by a grouped convolution whose group number equals the number of
channels and whose kernel covers the whole feature map, "so that the
grouped convolution exactly maps each feature map to a single value".

For a kernel `W` of shape `(k, k, C_in, C_out)` drawn by a base initializer,
SmoothInit returns, for every `(i, o)`,

    W'[:, :, i, o] = G * W[:, :, i, o]     (2-D convolution, zero "same" padding)
    G[u, v] = exp(-(u^2 + v^2) / (2 sigma^2)) / Z,  u, v in {-1, 0, 1}

with `Z` normalising `G` to sum 1.
"""

import keras
import numpy as np
from keras import initializers, layers, ops, saving


def gaussian_kernel(sigma: float = 0.8) -> np.ndarray:
    """The normalised 3x3 Gaussian `G` (sums to 1).

    Args:
        sigma: Standard deviation of the Gaussian in pixels (> 0).
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0; received {sigma!r}.")
    u = np.arange(-1, 2, dtype="float64")
    g = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2.0 * sigma**2))
    return (g / g.sum()).astype("float32")


def smooth_kernels(kernel, sigma: float = 0.8) -> np.ndarray:
    """Convolves every `(k, k)` slice of a conv kernel with `G` (zero padding).

    Args:
        kernel: Array of shape `(k, k, C_in, C_out)`.
        sigma: Standard deviation of the 3x3 Gaussian.

    Returns:
        The smoothed kernel, same shape, float32.
    """
    w = np.asarray(kernel, dtype="float32")
    if w.ndim != 4:
        raise ValueError(
            f"`kernel` must have shape (k, k, C_in, C_out); received {w.shape}."
        )
    g = gaussian_kernel(sigma)
    padded = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    out = np.zeros_like(w)
    for du in range(3):
        for dv in range(3):
            out += g[du, dv] * padded[du : du + w.shape[0], dv : dv + w.shape[1]]
    return out


@saving.register_keras_serializable(package="spzoo")
class SmoothInit(initializers.Initializer):
    """A base initializer followed by 3x3 Gaussian smoothing of each kernel.

    Args:
        base: The base initializer (name, config or instance), default
            `"he_normal"`.
        sigma: Standard deviation of the 3x3 Gaussian, default 0.8.
        seed: Seed handed to the base initializer when `base` is a name.
    """

    def __init__(self, base="he_normal", sigma: float = 0.8, seed=None):
        gaussian_kernel(sigma)  # validates sigma
        if isinstance(base, str) and seed is not None:
            base = initializers.get({"class_name": base, "config": {"seed": seed}})
        self.base = initializers.get(base)
        self.sigma = float(sigma)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(
                f"SmoothInit is for conv kernels (k, k, C_in, C_out); got {shape}."
            )
        w = keras.ops.convert_to_numpy(self.base(shape, dtype="float32"))
        return ops.cast(smooth_kernels(w, self.sigma), dtype or "float32")

    def get_config(self):
        return {
            "base": initializers.serialize(self.base),
            "sigma": self.sigma,
            "seed": None,
        }


@saving.register_keras_serializable(package="spzoo")
class WholeMapDepthwisePooling(layers.Layer):
    """Global pooling as a depthwise convolution covering the whole map.

    `y[n, c] = sum_{h, w} K[h, w, c] x[n, h, w, c]`, one trainable `(H, W)`
    kernel per channel, initialised to `1 / (H W)` (global average pooling at
    the start). Output shape `(batch, C)`.
    """

    def build(self, input_shape):
        if len(input_shape) != 4 or None in input_shape[1:]:
            raise ValueError(
                "WholeMapDepthwisePooling needs a known (H, W, C) input; "
                f"received {input_shape}."
            )
        h, w, c = input_shape[1:]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(h, w, c),
            initializer=initializers.Constant(1.0 / (h * w)),
        )

    def call(self, inputs):
        return ops.sum(inputs * self.kernel, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
