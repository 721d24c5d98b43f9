"""How the zoo's numbers read in text: the CLI, the model cards and the
site write sizes, percentages and thresholds the same way."""


def size_text(n: int) -> str:
    """A file size as people read it (kB below 0.1 MB)."""
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def percent(value, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals; `missing` for None."""
    return missing if value is None else f"{100 * value:.2f}%"


def threshold_text(value) -> str:
    """A threshold on log-alpha; None (no threshold) is `none (-inf)`."""
    return "none (-inf)" if value is None else f"{value:g}"
