"""The NHN performance score (NHN paper, Table 1).

    score = sqrt((e / 2)^2 + (n / 25)^2)

with `e` the test error in percent and `n` the number of parameters in
millions; lower is better (the paper's NHN: 3.72%, 7.0M -> 1.88).
"""

import math


def nhn_score(error_percent: float, params: float) -> float:
    """The NHN score of a model.

    Args:
        error_percent: Test error `e` in percent, in [0, 100].
        params: Number of parameters (a count, not millions), >= 0.
    """
    if not 0 <= error_percent <= 100:
        raise ValueError(
            f"`error_percent` must be in [0, 100]; received {error_percent!r}."
        )
    if params < 0:
        raise ValueError(f"`params` must be >= 0; received {params!r}.")
    return math.hypot(error_percent / 2.0, params / 1e6 / 25.0)
