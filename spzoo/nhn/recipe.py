"""The NHN training recipe, and training and scoring an NHN spec with it.

NHN paper, Section 3: Nesterov SGD with momentum 0.9, a cosine learning rate
from 0.05 to 0.001, l2 2e-4 (coupled), gradients clipped to a global norm of
5 (as ENAS does), batches of 100. The final training adds cutout (with
pad-and-crop, and flips where the dataset allows them) and dropout.
"""

import dataclasses
import math

import keras

from spzoo import data as spdata
from spzoo.nhn.masked import effective_params
from spzoo.nhn.model import build
from spzoo.nhn.score import nhn_score
from spzoo.training.classifier import compile_classifier
from spzoo.training.recipes import NHN, make_optimizer

BATCH_SIZE = 100


def nhn_optimizer(
    total_steps: int,
    initial_lr: float = 0.05,
    final_lr: float = 0.001,
    momentum: float = 0.9,
    l2: float = 2e-4,
    clipnorm: float = 5.0,
) -> keras.optimizers.Optimizer:
    """The NHN training recipe (`spzoo.training.NHN`).

    Nesterov SGD, `lr(t) = final + (initial - final) (1 + cos(pi t / T)) / 2`
    from 0.05 to 0.001, momentum 0.9, the paper's l2 2e-4 in its coupled
    form, gradients clipped to a global norm of 5 (as ENAS does).
    """
    recipe = dataclasses.replace(
        NHN,
        final_lr=final_lr,
        momentum=momentum,
        weight_decay=l2,
        global_clipnorm=clipnorm,
    )
    return make_optimizer(recipe, total_steps, initial_lr=initial_lr)


def steps_for(train_size: int, batch_size: int, epochs: float) -> int:
    """Training steps of `epochs` passes over `train_size` examples (>= 1)."""
    return max(1, math.ceil(epochs * train_size / batch_size))


def train_spec(
    spec: dict,
    dataset: str,
    epochs: float,
    seed: int = 0,
    augment: bool = False,
    verbose: int = 0,
) -> tuple:
    """Trains an NHN spec from scratch with the NHN recipe (`nhn_optimizer`).

    Args:
        spec: An NHN spec (`spzoo.nhn.spec`).
        dataset: Dataset name.
        epochs: Passes over the training split (fractions allowed).
        seed: Seed of weights and shuffling.
        augment: Cutout with pad-and-crop and flips where allowed (final training).
        verbose: Keras progress bar (1) or silent (0).

    Returns:
        `(model, {"accuracy", "params", "score"})` on the eval split.
    """
    info = spdata.get(dataset)
    keras.utils.set_random_seed(seed)
    model = build(spec, info.input_shape, info.num_classes)
    steps = steps_for(info.sizes["train"], BATCH_SIZE, epochs)
    compile_classifier(model, nhn_optimizer(steps))
    train = spdata.load(dataset, "train", BATCH_SIZE, seed=seed, augment=augment)
    model.fit(train.repeat(), epochs=1, steps_per_epoch=steps, verbose=verbose)
    return model, evaluate(model, dataset)


def evaluate(model: keras.Model, dataset: str) -> dict:
    """Eval-split accuracy, effective parameters and NHN score of a model."""
    if not model.compiled:
        compile_classifier(model)
    _, accuracy = model.evaluate(
        spdata.load(dataset, "eval", 256, shuffle=False), verbose=0
    )
    params = effective_params(model)
    error = 100.0 * (1.0 - float(accuracy))
    return {
        "accuracy": float(accuracy),
        "params": int(params),
        "score": nhn_score(error, params),
    }
