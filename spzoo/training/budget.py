"""Closing a gated model's weakest gates down to a MAC budget.

A trained gated model (`spzoo.blocks.residual_block(gate=...)`, gates that
do not depend on the input) runs at any threshold on log-alpha, but the
channels it closes at a low-cost threshold were open during training:
the rest of the network never learned to do without them. `close_to_budget`
finds the lowest threshold whose expected MACs are at most a fraction of
the ungated count and closes every gate below it for good (its log-alpha
becomes `CLOSED_LOG_ALPHA`, where the hard-concrete sample is zero but for
one draw in a few thousand), so that fine-tuning (`spzoo train
--init-from ZOO_NAME --mac-budget F`) teaches the open channels to do the
work. The gates stay trainable; the L0 term keeps acting on the open ones,
so the threshold curve goes on below the budget.
"""

import keras
import numpy as np

from spzoo.metrics.counting import static_macs
from spzoo.metrics.gated import expected_macs, gate_blocks

# log-alpha of a gate closed by `close_to_budget`.
CLOSED_LOG_ALPHA = -10.0


def check_mac_budget(value, argument: str = "mac_budget") -> float:
    """A fraction in (0, 1); returns it as a float."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = float("nan")
    if isinstance(value, bool) or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"`{argument}` must be a fraction of the ungated MACs in (0, 1); "
            f"received {value!r}."
        )
    return fraction


def static_block_gates(model: keras.Model) -> list:
    """The `PresynapticGate`s of a model's gated blocks; refuses a model
    without them or with input-dependent ones."""
    gates = [block.gate for block in gate_blocks(model)]
    if not gates:
        raise ValueError(
            f"Model {model.name!r} has no block gates; a MAC budget closes the "
            "gates of a gated model (e.g. gated_sp_resnet)."
        )
    dynamic = [gate.name for gate in gates if not gate.is_static]
    if dynamic:
        raise ValueError(
            f"Model {model.name!r} has input-dependent gates ({dynamic[0]!r}, ...); "
            "a MAC budget needs gates that are the same for every input."
        )
    return gates


def budget_threshold(model: keras.Model, fraction: float) -> float:
    """The lowest threshold on log-alpha at which the model's expected MACs
    are at most `fraction` of its ungated MACs.

    Raises:
        ValueError: The model has no input-independent block gates, or
            closing every gate still costs more than the budget.
    """
    fraction = check_mac_budget(fraction)
    gates = static_block_gates(model)
    ungated = float(static_macs(model))
    values = np.unique(np.concatenate([gate.static_log_alpha() for gate in gates]))

    def cost(threshold: float) -> float:
        return expected_macs(model, threshold=threshold) / ungated

    # The cost falls as the threshold rises through the log-alpha values:
    # bisect for the lowest that fits (+inf closes every gate).
    candidates = np.append(values, np.inf)
    if cost(float(candidates[-1])) > fraction:
        raise ValueError(
            f"`mac_budget` {fraction} is below what model {model.name!r} costs "
            f"with every gate closed ({cost(np.inf):.3f} of its MACs)."
        )
    low, high = 0, len(candidates) - 1
    while low < high:
        middle = (low + high) // 2
        if cost(float(candidates[middle])) <= fraction:
            high = middle
        else:
            low = middle + 1
    return float(candidates[low])


def close_to_budget(model: keras.Model, fraction: float) -> dict:
    """Closes the gates below the lowest threshold within `fraction` of the MACs.

    Args:
        model: A built functional model with input-independent block gates.
        fraction: The budget, a share of the model's ungated MACs in (0, 1).

    Returns:
        `{"mac_budget", "threshold", "closed", "gates", "macs",
        "macs_fraction", "ungated_macs"}`: the threshold on log-alpha that
        was applied, how many of the gates it closed, and the model's
        expected MACs afterwards.

    Raises:
        ValueError: The model has no such gates, or closing every gate
            still costs more than the budget.
    """
    fraction = check_mac_budget(fraction)
    threshold = budget_threshold(model, fraction)
    closed = 0
    gates = static_block_gates(model)
    for gate in gates:
        shut = gate.static_log_alpha() < threshold
        closed += int(shut.sum())
        bias = keras.ops.convert_to_numpy(gate.presynaptic_bias)
        closed_bias = CLOSED_LOG_ALPHA / gate.log_alpha_scale
        gate.presynaptic_bias.assign(
            np.where(shut, closed_bias, bias).astype("float32")
        )
    ungated = float(static_macs(model))
    after = expected_macs(model)
    return {
        "mac_budget": fraction,
        "threshold": threshold,
        "closed": closed,
        "gates": sum(gate.filters for gate in gates),
        "macs": after,
        "macs_fraction": after / ungated,
        "ungated_macs": ungated,
    }
