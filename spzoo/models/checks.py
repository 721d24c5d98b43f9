"""Argument checks shared by the model families."""

import copy


def check_num_classes(num_classes) -> int:
    """Returns `num_classes` if it is an int >= 2, else raises `ValueError`."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2; received {num_classes!r}."
        )
    return num_classes


def check_family(spec, family: str, default: str | None = None) -> dict:
    """A deep copy of `spec` after checking that it is a dict of `family`
    (`spec['family']`, `default` when absent); else `ValueError`."""
    if not isinstance(spec, dict):
        raise ValueError(f"`spec` must be a dict; received {type(spec).__name__}.")
    spec = copy.deepcopy(spec)
    if spec.get("family", default) != family:
        raise ValueError(
            f"`spec['family']` must be {family!r}; received {spec.get('family')!r}."
        )
    return spec


def check_image_shape(input_shape, allow_none: bool = False) -> tuple:
    """`input_shape` as a tuple `(H, W, C)` of positive sizes (None allowed
    for a size when `allow_none`); else `ValueError`."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(
        (d is None and not allow_none) or (d is not None and d < 1) for d in input_shape
    ):
        raise ValueError(
            f"`input_shape` must be (height, width, channels); received {input_shape}."
        )
    return input_shape
