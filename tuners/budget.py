"""Per-dataset search settings: the paper's Table I rule, shrunk by a budget.

Lee & Wang, "NAS Parameters": during the growth search every network is
trained with SGD (momentum 0.9, lr 0.01 x0.2 at each 30% of the steps,
batch 128, weight decay 5e-4) for 10 epochs; width N_F and steps N_S are
scaled per dataset by `spzoo.data.scaling.scale_settings` (CIFAR-10: 16
filters, 3900 steps). The pruning NAS trains its initial ResNet with 50x
the steps, with N_F filters *per neuron type* (3 N_F channels).

A budget shrinks this for quick runs:

| budget | N_F            | steps        | epochs | fine-tune/phase | base steps |
| ------ | -------------- | ------------ | ------ | --------------- | ---------- |
| paper  | Table I rule   | Table I rule | 10     | one epoch       | 50 x steps |
| small  | rule in [4, 8] | 10% (>= 20)  | 2      | 10 steps        | 5 x steps  |
| tiny   | 2              | 2            | 1      | 1 step          | 2 x steps  |
"""

import dataclasses
import math

from spzoo.data.scaling import table1_scale

BATCH_SIZE = 128


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much a search may spend per network.

    Attributes:
        name: `"paper"`, `"small"` or `"tiny"`.
        steps_fraction: Share of the Table I steps N_S per network.
        min_steps: Lower bound of the steps per network.
        min_filters: Lower bound of N_F.
        max_filters: Upper bound of N_F (None: none).
        epochs: Epochs the steps are spread over.
        finetune_steps: Steps per pruning fine-tune phase (None: one epoch).
        base_steps_factor: Steps of the pruning NAS's initial training, as a
            multiple of the search steps (the paper: 50).
    """

    name: str
    steps_fraction: float
    min_steps: int
    min_filters: int
    max_filters: int | None
    epochs: int
    finetune_steps: int | None
    base_steps_factor: int


BUDGETS = {
    "paper": Budget("paper", 1.0, 1, 1, None, 10, None, 50),
    "small": Budget("small", 0.1, 20, 4, 8, 2, 10, 5),
    "tiny": Budget("tiny", 0.0, 2, 2, 2, 1, 1, 2),
}


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Settings of one search on one dataset.

    Attributes:
        dataset: Dataset name.
        budget: Budget name.
        filters: N_F.
        steps: Training steps per network (N_S, shrunk by the budget).
        epochs: Epochs the steps are spread over.
        steps_per_epoch: `ceil(steps / epochs)`.
        batch_size: 128, as the paper.
        finetune_steps: Steps per pruning fine-tune phase (None: an epoch).
        base_steps: Steps of the pruning NAS's initial training.
    """

    dataset: str
    budget: str
    filters: int
    steps: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    finetune_steps: int | None
    base_steps: int


def search_settings(
    info, budget: str = "paper", width_rule: str = "formula"
) -> SearchSettings:
    """Scales the paper's search settings to a dataset and a budget.

    Args:
        info: A `spzoo.data.DatasetInfo` (its train size and channels).
        budget: One of `BUDGETS`.
        width_rule: `"formula"` (default) or `"table1"` (audio N_F as Table
            I prints it, without the channel factor); see
            `spzoo.data.scaling.table1_scale`.
    """
    if budget not in BUDGETS:
        raise ValueError(
            f"`budget` must be one of {sorted(BUDGETS)}; received {budget!r}."
        )
    b = BUDGETS[budget]
    scaled = table1_scale(info, width_rule)
    filters = max(b.min_filters, scaled.num_filters)
    if b.max_filters is not None:
        filters = min(filters, b.max_filters)
    steps = max(b.min_steps, b.epochs, int(round(scaled.num_steps * b.steps_fraction)))
    return SearchSettings(
        dataset=info.name,
        budget=budget,
        filters=filters,
        steps=steps,
        epochs=b.epochs,
        steps_per_epoch=math.ceil(steps / b.epochs),
        batch_size=BATCH_SIZE,
        finetune_steps=b.finetune_steps,
        base_steps=steps * b.base_steps_factor,
    )
