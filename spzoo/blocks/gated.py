"""The `"inhibition"` convolution cell: `InhibitionConv2D` in place of `Conv2D`.

Name it in a spec as `"cell": "inhibition"` or
`"cell": {"type": "inhibition", "sparsity_weight": 0.01, ...}`; the options
are `InhibitionConv2D` arguments.
"""

from spzoo.blocks.conv import register_conv_cell
from spzoo.layers import InhibitionConv2D


def inhibition_cell(filters, kernel_size, strides, name=None, **options):
    """Builds an `InhibitionConv2D` that can replace the plain conv cell.

    Defaults match the plain cell (`same` padding, no bias, He-normal
    kernel, no activation: batch norm follows it); `options` override them
    and set the gate (e.g. `presynaptic`, `postsynaptic`, `input_dependent`,
    `combination`, `sparsity_weight`, `threshold`).
    """
    kwargs = {
        "padding": "same",
        "use_bias": False,
        "kernel_initializer": "he_normal",
        **options,
    }
    return InhibitionConv2D(filters, kernel_size, strides=strides, name=name, **kwargs)


register_conv_cell("inhibition", inhibition_cell)
