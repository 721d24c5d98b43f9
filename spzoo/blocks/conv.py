"""Convolution cells: the plain convolution and any registered variants.

Ops and blocks build their convolutions through `conv_cell(cell, ...)`, so a
family can swap the plain `Conv2D` for another cell (e.g. a gated
convolution) by naming it in the architecture spec.
"""

from collections.abc import Callable

from keras import layers

_CELLS: dict[str, Callable] = {}


def register_conv_cell(name: str, factory: Callable) -> None:
    """Registers `factory(filters, kernel_size, strides, name, **options)`."""
    _CELLS[name] = factory


def conv_cell(
    cell,
    filters: int,
    kernel_size: int,
    strides: int = 1,
    name: str | None = None,
) -> layers.Layer:
    """Builds a convolution cell.

    Args:
        cell: `"conv"` (a bias-free, `same`-padded `Conv2D`, He-normal
            initialised: batch norm follows it) or the name of a registered
            cell, or a dict `{"type": name, **options}`.
        filters: Output channels (>= 1).
        kernel_size: Square kernel size.
        strides: Stride along H and W.
        name: Layer name.
    """
    options = {}
    if isinstance(cell, dict):
        options = {k: v for k, v in cell.items() if k != "type"}
        cell = cell.get("type")
    if cell not in _CELLS:
        raise ValueError(
            f"Unknown convolution `cell` {cell!r}; expected one of {sorted(_CELLS)}."
        )
    if int(filters) < 1:
        raise ValueError(f"`filters` must be >= 1; received {filters!r}.")
    return _CELLS[cell](
        int(filters), int(kernel_size), int(strides), name=name, **options
    )


def _plain_conv(filters, kernel_size, strides, name=None):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


register_conv_cell("conv", _plain_conv)
