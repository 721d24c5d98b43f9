"""Argument checks shared by the model builders."""


def check_num_classes(num_classes) -> int:
    """Returns `num_classes` if it is an int >= 2, else raises `ValueError`."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2; received {num_classes!r}."
        )
    return num_classes
