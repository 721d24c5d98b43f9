"""Training recipes: the papers' and a fast one for CPU budgets (data).

A recipe is everything about a training run except the architecture, the
dataset, the number of epochs and the seed. `spzoo train --recipe NAME`
applies one; its `to_dict()` is recorded in every run's metrics JSON and in
the zoo manifest, so a run says how it was trained.
"""

import dataclasses
import math

import keras

from spzoo.training.coupled_decay_sgd import CoupledDecaySGD

# Never decayed: batch-norm scale and shift, biases, the neuron-mixture
# logits `w_TL` of `TrainableNeuronLayer`.
NO_DECAY_VARIABLES = ("gamma", "beta", "bias", "mixture_logits")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe.

    Attributes:
        name: The recipe's name (`spzoo train --recipe NAME`).
        description: One line for `--help` and the manifest.
        initial_lr: Learning rate at step 0 (`paper_steps`) or peak rate
            after warm-up (`warmup_cosine`).
        schedule: `"paper_steps"` (x `decay` at 30%, 60%, 90% of the steps),
            `"cosine"` (cosine from `initial_lr` to `final_lr`) or
            `"warmup_cosine"` (linear warm-up from 0, then cosine to
            `final_lr`).
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: Coupled L2 coefficient (`CoupledDecaySGD`), not
            applied to `NO_DECAY_VARIABLES`.
        weight_decay_form: Always `"coupled"` here; recorded so a reader of
            a manifest knows which form the number means.
        decay: Factor of each `paper_steps` drop.
        final_lr: Learning rate at the last step of the cosine schedules.
        warmup_fraction: Share of the steps spent warming up
            (`warmup_cosine`), at most one epoch.
        label_smoothing: Cross-entropy label smoothing.
        augment: `None`, or the options of `spzoo.data.visual.augment`
            (pad-and-crop, cutout; flips where the dataset allows them).
        precision: Keras dtype policy while training (`"float32"` or
            `"mixed_bfloat16"`); the saved model is always float32.
        global_clipnorm: Clip the gradient by its global norm (None: off).
    """

    name: str
    description: str
    initial_lr: float
    schedule: str = "paper_steps"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    weight_decay_form: str = "coupled"
    decay: float = 0.2
    final_lr: float = 0.0
    warmup_fraction: float = 0.0
    label_smoothing: float = 0.0
    augment: dict | None = None
    precision: str = "float32"
    global_clipnorm: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PAPER = Recipe(
    name="paper",
    description="the papers' recipe: SGD momentum 0.9, lr 0.01 x0.2 at 30/60/90% "
    "of the steps, coupled weight decay 5e-4, no augmentation, float32",
    initial_lr=0.01,
)

FAST = Recipe(
    name="fast",
    description="highest accuracy per CPU-hour here: SGD Nesterov 0.9, linear "
    "warm-up to lr 0.1 then cosine to 0, coupled weight decay 5e-4, label "
    "smoothing 0.1, pad-and-crop (+flips where allowed), mixed bfloat16",
    initial_lr=0.1,
    schedule="warmup_cosine",
    nesterov=True,
    warmup_fraction=0.1,
    label_smoothing=0.1,
    augment={"pad": 2, "cutout": 0},
    precision="mixed_bfloat16",
)

NHN = Recipe(
    name="nhn",
    description="the NHN paper's recipe (after ENAS): SGD Nesterov 0.9, cosine "
    "from lr 0.05 to 0.001, coupled l2 2e-4, gradients clipped to global norm 5",
    initial_lr=0.05,
    schedule="cosine",
    nesterov=True,
    weight_decay=2e-4,
    final_lr=0.001,
    global_clipnorm=5.0,
)

RECIPES = {recipe.name: recipe for recipe in (PAPER, FAST, NHN)}


def get_recipe(name: "str | Recipe") -> Recipe:
    """Returns the recipe called `name` (a `Recipe` is returned as is)."""
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(
            f"`recipe` must be one of {sorted(RECIPES)}; received {name!r}."
        )
    return RECIPES[name]


def check_learning_rate(value, argument: str = "initial_lr") -> float:
    """Returns `value` as a float, or raises if it is not positive and finite."""
    try:
        lr = float(value)
    except (TypeError, ValueError):
        lr = float("nan")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(
            f"`{argument}` must be a positive finite number; received {value!r}."
        )
    return lr


def make_schedule(
    recipe: Recipe,
    total_steps: int,
    steps_per_epoch: int | None = None,
    initial_lr: float | None = None,
):
    """The recipe's learning-rate schedule over `total_steps` steps."""
    if int(total_steps) < 1:
        raise ValueError(f"`total_steps` must be >= 1; received {total_steps}.")
    total_steps = int(total_steps)
    lr = check_learning_rate(
        recipe.initial_lr if initial_lr is None else initial_lr, "initial_lr"
    )
    if recipe.schedule == "paper_steps":
        boundaries = sorted(
            {max(1, int(round(f * total_steps))) for f in (0.3, 0.6, 0.9)}
        )
        values = [lr * recipe.decay**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            lr, total_steps, alpha=recipe.final_lr / lr
        )
    if recipe.schedule == "warmup_cosine":
        warmup = int(round(recipe.warmup_fraction * total_steps))
        if steps_per_epoch:
            warmup = min(warmup, int(steps_per_epoch))
        warmup = min(warmup, total_steps - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else lr,
            decay_steps=total_steps - warmup,
            alpha=recipe.final_lr / lr,
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    raise ValueError(
        f"Recipe {recipe.name!r}: `schedule` must be 'paper_steps', 'cosine' "
        f"or 'warmup_cosine'; received {recipe.schedule!r}."
    )


def make_optimizer(
    recipe: "str | Recipe",
    total_steps: int,
    steps_per_epoch: int | None = None,
    initial_lr: float | None = None,
) -> keras.optimizers.Optimizer:
    """The recipe's optimizer: `CoupledDecaySGD` with its schedule."""
    recipe = get_recipe(recipe)
    optimizer = CoupledDecaySGD(
        learning_rate=make_schedule(recipe, total_steps, steps_per_epoch, initial_lr),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        coupled_weight_decay=recipe.weight_decay,
        global_clipnorm=recipe.global_clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_VARIABLES))
    return optimizer
