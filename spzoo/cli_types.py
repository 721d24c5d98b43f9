"""Argument types and shared options of the `spzoo` command line.

Each type reads one argument and raises `argparse.ArgumentTypeError` with
what was expected, so argparse prints a usage error (exit 2). No Keras here:
the parsers are built for `--help`.
"""

import argparse
import math

# The width of a zoo model's name in the tables `spzoo zoo list` and
# `spzoo zoo site` print.
NAME_WIDTH = 42


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}"
        )
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive finite number, got {text!r}"
        )
    return value


def shape(text: str) -> tuple:
    """`H,W,C`: three positive integers."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected H,W,C (three positive integers), got {text!r}"
        )
    return dims


def add_name_filter(parser: argparse.ArgumentParser) -> None:
    """`--filter GLOB` on zoo model names (`spzoo.zoo.list_models`)."""
    parser.add_argument(
        "--filter", default=None, help="glob on the name, e.g. 'gated*'"
    )
