"""Training: the recipes (the papers' and a fast one) and the `spzoo train` job."""

from spzoo.training.classifier import ACCURACY, compile_classifier
from spzoo.training.coupled_decay_sgd import CoupledDecaySGD
from spzoo.training.job import (
    EpochProgress,
    atomic_write_text,
    paper_optimizer,
    paper_schedule,
    save_model_atomic,
    train,
)
from spzoo.training.recipes import (
    FAST,
    PAPER,
    RECIPES,
    Recipe,
    get_recipe,
    make_optimizer,
    make_schedule,
)

__all__ = [
    "ACCURACY",
    "CoupledDecaySGD",
    "EpochProgress",
    "FAST",
    "PAPER",
    "RECIPES",
    "Recipe",
    "atomic_write_text",
    "compile_classifier",
    "get_recipe",
    "make_optimizer",
    "make_schedule",
    "paper_optimizer",
    "paper_schedule",
    "save_model_atomic",
    "train",
]
