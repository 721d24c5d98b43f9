"""The paper's rule for scaling network size and training steps by dataset.

From "NAS Parameters": network width and training steps grow with the
square root of the dataset size, and width also with the number of input
channels, relative to CIFAR-10:

    N_F,DS = N_F,C * sqrt(N_DS / N_C) * C_DS / C_C
    N_S,DS = N_S,C * sqrt(N_DS / N_C)

with CIFAR-10 as the reference: N_C = 50000 examples, C_C = 3 channels,
N_F,C = 16 filters, N_S,C = 3900 steps.

Table I does not print what the formula gives for its audio datasets
(one channel): its N_F values there (Commands 20, Urbansound 6, ...) are
the formula without the channel factor `C_DS / C_C`, about 3x wider. Two
width rules, `WIDTH_RULES`: `"formula"` (the formula as written, what the
searches apply by default) and `"table1"` (the widths Table I prints: no
channel factor for audio). `table1_scale(info, rule)` applies either; see
docs/fidelity.md, row "Table I widths".
"""

import dataclasses
import math

REFERENCE_EXAMPLES = 50_000
REFERENCE_CHANNELS = 3
REFERENCE_FILTERS = 16
REFERENCE_STEPS = 3900
WIDTH_RULES = ("formula", "table1")


@dataclasses.dataclass(frozen=True)
class Scaled:
    """Training settings scaled to one dataset.

    Attributes:
        filters: N_F,DS before rounding.
        steps: N_S,DS before rounding.
    """

    filters: float
    steps: float

    @property
    def num_filters(self) -> int:
        """N_F,DS rounded to the nearest integer (at least 1)."""
        return max(1, int(round(self.filters)))

    @property
    def num_steps(self) -> int:
        """N_S,DS rounded to the nearest hundred, as Table I prints it."""
        return max(100, int(round(self.steps, -2)))


def scale_settings(
    num_examples: int,
    channels: int,
    reference_examples: int = REFERENCE_EXAMPLES,
    reference_channels: int = REFERENCE_CHANNELS,
    reference_filters: int = REFERENCE_FILTERS,
    reference_steps: int = REFERENCE_STEPS,
) -> Scaled:
    """Scales the reference's filters and steps to a dataset.

    Args:
        num_examples: N_DS, training examples of the dataset.
        channels: C_DS, channels of one example (1 greyscale/audio, 3 colour).
        reference_examples: N_C (CIFAR-10: 50000).
        reference_channels: C_C (CIFAR-10: 3).
        reference_filters: N_F,C (16).
        reference_steps: N_S,C (3900).

    Returns:
        A `Scaled` with the exact values and their rounded forms.
    """
    for arg, value in (
        ("num_examples", num_examples),
        ("channels", channels),
        ("reference_examples", reference_examples),
        ("reference_channels", reference_channels),
    ):
        if value <= 0:
            raise ValueError(f"`{arg}` must be > 0; received {value!r}.")
    ratio = math.sqrt(num_examples / reference_examples)
    return Scaled(
        filters=reference_filters * ratio * channels / reference_channels,
        steps=reference_steps * ratio,
    )


def table1_scale(info, width_rule: str = "formula") -> Scaled:
    """The Table I rule for a registered dataset, by one of `WIDTH_RULES`.

    Args:
        info: A `spzoo.data.DatasetInfo` (train size, channels, modality).
        width_rule: `"formula"`: `C_DS` is the dataset's channel count, as
            the formula writes; `"table1"`: audio datasets without the
            channel factor (`C_DS = C_C`), which is what Table I prints.
    """
    if width_rule not in WIDTH_RULES:
        raise ValueError(
            f"`width_rule` must be one of {WIDTH_RULES}; received {width_rule!r}."
        )
    if not info.sizes or not info.sizes.get("train"):
        raise ValueError(
            f"Dataset {info.name!r} has no known train size; the Table I rule needs it."
        )
    channels = info.input_shape[-1]
    if width_rule == "table1" and info.modality.startswith("audio"):
        channels = REFERENCE_CHANNELS
    return scale_settings(info.sizes["train"], channels)
