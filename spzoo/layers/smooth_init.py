"""SmoothInit and the whole-map depthwise pooling: see `spzoo.nhn.smooth_init`.

Kept so that `spzoo.layers.smooth_init` (the module path saved NHN models
name) and `spzoo.layers.SmoothInit` import as before.
"""

from spzoo.nhn.smooth_init import (
    SmoothInit,
    WholeMapDepthwisePooling,
    gaussian_kernel,
    smooth_kernels,
)

__all__ = [
    "SmoothInit",
    "WholeMapDepthwisePooling",
    "gaussian_kernel",
    "smooth_kernels",
]
