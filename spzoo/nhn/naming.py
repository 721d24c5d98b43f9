"""Layer names of NHN models: built here, parsed here, nowhere else.

DNP's weight transfer and LDS's supernet find layers by name, so the
convention is defined once:

- layer `i` of the macro model: `l<i>_<part>` (`part`: `relu`, `conv`,
  `bn`, `neurons`, `sep`, `pool`, `concat`, `merge`, `merge_bn`, `addons`);
- the add-on convolution from layer `a` into layer `b` with a `k x k`
  kernel: `addon_<a>_<b>_k<k>`.
"""

import re

ADDON_PREFIX = "addon_"
_LAYER = re.compile(r"l(\d+)_(.+)")
_ADDON = re.compile(r"addon_(\d+)_(\d+)_k(\d+)")


def layer_name(index: int, part: str) -> str:
    """The name of a part of macro layer `index`, e.g. `l3_conv`."""
    return f"l{int(index)}_{part}"


def parse_layer_name(name: str) -> tuple[int, str] | None:
    """`(index, part)` of a macro layer's name; None for any other name."""
    match = _LAYER.fullmatch(name)
    return None if match is None else (int(match.group(1)), match.group(2))


def addon_layer_name(source: int, target: int, kernel: int) -> str:
    """The name of the add-on convolution `source -> target` of size `kernel`."""
    return f"{ADDON_PREFIX}{int(source)}_{int(target)}_k{int(kernel)}"


def parse_addon_layer_name(name: str) -> tuple[int, int, int] | None:
    """`(source, target, kernel)` of an add-on layer's name; None otherwise."""
    match = _ADDON.fullmatch(name)
    return None if match is None else tuple(int(g) for g in match.groups())


def is_addon_layer(name: str) -> bool:
    """Whether `name` is the name of an add-on convolution."""
    return parse_addon_layer_name(name) is not None
