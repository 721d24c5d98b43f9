"""How the zoo's numbers read in text: the CLI, the model cards and the
site write sizes, percentages and thresholds the same way."""

import numpy as np


def size_text(n: int) -> str:
    """A file size as people read it (kB below 0.1 MB)."""
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def percent(value, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals; `missing` for None."""
    return missing if value is None else f"{100 * value:.2f}%"


def threshold_text(value) -> str:
    """A threshold on log-alpha; None (no threshold) is `none (-inf)`.

    Printed as the shortest decimal of its float32 value (the precision the
    gates and the exported graphs compare in): typed back, it selects the
    same level. Six significant digits (`%g`) would not: 5.13634 for the
    level 5.136343 runs the level below it, with that level's batch-norm
    statistics and more channels closed.
    """
    if value is None:
        return "none (-inf)"
    return np.format_float_positional(np.float32(value), trim="-")
