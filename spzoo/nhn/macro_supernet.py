"""`MacroSupernet`: the NHN macro space with weights shared by all candidates."""

import os
import random

import keras
from keras import layers

from spzoo.io import atomic_path
from spzoo.nhn.choice import Choice
from spzoo.nhn.macro_space import MacroSpace
from spzoo.nhn.recipe import nhn_optimizer
from spzoo.nhn.smooth_init import SmoothInit, WholeMapDepthwisePooling
from spzoo.nhn.spec import CONV_OPS, OPS, SEP_OPS
from spzoo.training.classifier import compile_classifier


def _branch(x, op: str, filters: int, smooth_init: bool):
    """One op of the supernet's layer on `x` (unnamed layers)."""
    if op in CONV_OPS or op in SEP_OPS:
        y = layers.ReLU()(x)
        if op in CONV_OPS:
            init = SmoothInit() if smooth_init else "he_normal"
            y = layers.Conv2D(
                filters,
                CONV_OPS[op],
                padding="same",
                use_bias=False,
                kernel_initializer=init,
            )(y)
        else:
            y = layers.SeparableConv2D(
                filters, SEP_OPS[op], padding="same", use_bias=False
            )(y)
        return layers.BatchNormalization()(y)
    if op == "maxpool3x3":
        return layers.MaxPooling2D(3, 1, padding="same")(x)
    return layers.AveragePooling2D(3, 1, padding="same")(x)


class MacroSupernet:
    """The macro space with weights shared by all candidates (after ENAS).

    Every layer computes all six ops on the previous layer's output; a
    candidate picks one op per layer and its skips by assigning fixed 0/1
    choice vectors, so no candidate is built or trained on its own:

        x_i = sum_op c_i[op] op(x_{i-1}) + sum_s k_i[s] x_s

    (the standalone model merges skips with a 1x1 conv instead; the
    supernet ranks candidates, the winner trains from scratch). The shared
    weights train with a uniformly random candidate per batch (random
    search with weight sharing), then candidates are evaluated as they are.

    Args:
        space: The `MacroSpace`.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        total_steps: Steps of `train` in all (for the cosine schedule).
    """

    def __init__(self, space: MacroSpace, input_shape, num_classes, total_steps):
        self.space = space
        per = space.layers_per_segment
        inputs = keras.Input(shape=tuple(input_shape))
        x = layers.Conv2D(space.filters, 3, padding="same", use_bias=False)(inputs)
        x = layers.BatchNormalization()(x)
        outs, self.choices, self.skips = [], [], []
        for i in range(space.num_layers):
            if i and i % per == 0:
                x = layers.AveragePooling2D(2)(x)
            branches = [_branch(x, op, space.filters, space.smooth_init) for op in OPS]
            choice = Choice(len(OPS), name=f"op_choice_{i}")
            y = choice(branches)
            self.choices.append(choice)
            sources = space.skip_sources(i)
            if sources:
                skip = Choice(len(sources), name=f"skip_choice_{i}")
                y = layers.Add()([y, skip([outs[s] for s in sources])])
                self.skips.append((skip, sources))
            else:
                self.skips.append((None, []))
            outs.append(y)
            x = y
        x = layers.ReLU()(x)
        if space.smooth_init:
            x = WholeMapDepthwisePooling()(x)
        else:
            x = layers.GlobalAveragePooling2D()(x)
        self.model = keras.Model(inputs, layers.Dense(num_classes)(x))
        compile_classifier(self.model, nhn_optimizer(max(1, total_steps)))

    def assign(self, spec: dict) -> None:
        """Switches the supernet to the candidate `spec` (no weights change)."""
        for i, layer in enumerate(spec["layers"]):
            self.choices[i].choice.assign(
                [1.0 if op == layer["op"] else 0.0 for op in OPS]
            )
            skip, sources = self.skips[i]
            if skip is not None:
                skip.choice.assign(
                    [1.0 if s in layer.get("skips", []) else 0.0 for s in sources]
                )

    def train(self, batches, rng: random.Random) -> None:
        """One step per batch, each with a uniformly random candidate."""
        for x, y in batches:
            self.train_batch(self.space.random_spec(rng), x, y)

    def train_batch(self, spec: dict, x, y) -> float:
        """One step of the shared weights on one batch as candidate `spec`;
        returns the batch's accuracy (before the step)."""
        self.assign(spec)
        return float(self.model.train_on_batch(x, y)[1])

    def evaluate(self, spec: dict, eval_data) -> float:
        """Accuracy of candidate `spec` with the shared weights as they are."""
        self.assign(spec)
        return float(self.model.evaluate(eval_data, verbose=0)[1])

    def evaluate_batch(self, spec: dict, x, y) -> float:
        """Accuracy of candidate `spec` on one batch (inference mode)."""
        self.assign(spec)
        return float(self.model.test_on_batch(x, y)[1])

    def save(self, path) -> None:
        """Writes the shared weights and the optimizer's state (its step
        drives the cosine schedule) atomically: a temporary file, a rename.

        Args:
            path: A `.weights.h5` file.
        """
        with atomic_path(path) as tmp:
            self.model.save_weights(tmp)

    def load(self, path) -> None:
        """Restores the shared weights and optimizer state written by `save`."""
        self.model.load_weights(os.fspath(path))
