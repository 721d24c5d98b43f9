"""`MacroSearchOracle`: random search of the NHN layer-hierarchy (macro) space.

NHN paper, Sections 2.1 and 3 ("Layer hierarchy search"): the base model is
an L-layer CNN from the ENAS macro space (Pham et al.), L = 12 in three
segments split by average pooling; each layer is one of {3x3 conv, 5x5
conv, 3x3 separable, 5x5 separable, 3x3 max pool, 3x3 avg pool} and takes
skip connections from earlier layers (of its segment here, so that every
skip has the layer's data dimensions). The paper's abstract calls the
process "random architecture search"; this oracle samples the space
uniformly (op per layer uniform, each skip present with `skip_prob`), and
every trial trains its candidate for the budget's steps with the NHN
recipe (`spzoo.nhn.recipe.nhn_optimizer`) and reports `val_accuracy`
and `params`; with `supernet=True` the candidates are ranked on a
weight-shared `spzoo.nhn.macro_supernet.MacroSupernet` instead. The space
is `spzoo.nhn.macro_space.MacroSpace`.

The trial's architecture is the hyperparameter value `"architecture"`, an
`spzoo.models.nhn` JSON spec; KerasTuner keeps trials, so a search resumes.
"""

import json
import os
import random

import keras
import keras_tuner

from spzoo.nhn.macro_space import MacroSpace
from spzoo.nhn.macro_supernet import MacroSupernet
from spzoo.nhn.masked import effective_params
from spzoo.nhn.model import build
from spzoo.nhn.recipe import nhn_optimizer, steps_for
from spzoo.tuners.base import (
    ACCURACY,
    ARCHITECTURE,
    PARAMS,
    SearchOracle,
    SearchTuner,
    running,
    save_weights_atomic,
)

__all__ = [
    "MacroHyperModel",
    "MacroSearchOracle",
    "MacroSpace",
    "MacroSupernet",
    "MacroTuner",
    "nhn_optimizer",
    "steps_for",
]


class MacroSearchOracle(SearchOracle):
    """Random search over `MacroSpace` (the layer-hierarchy search).

    Args:
        space: The `MacroSpace`.
        max_trials: Architectures to evaluate.
        seed: Each trial draws from `Random(f"{seed}-{trial_id}")`, so a
            resumed search makes the same choices.
        **kwargs: Other `keras_tuner.Oracle` arguments.
    """

    search_name = "macro"

    def __init__(self, space: MacroSpace, max_trials: int = 10, seed=None, **kwargs):
        if not isinstance(space, MacroSpace):
            raise ValueError(f"`space` must be a MacroSpace; received {space!r}.")
        if not isinstance(max_trials, int) or max_trials < 1:
            raise ValueError(f"`max_trials` must be an int >= 1; got {max_trials!r}.")
        default = json.dumps(space.random_spec(random.Random(0)))
        super().__init__({ARCHITECTURE: default}, max_trials, seed=seed, **kwargs)
        self.space = space

    def populate_space(self, trial_id):
        rng = random.Random(f"{self.seed}-{trial_id}")
        spec = self.space.random_spec(rng, name=f"nhn_macro_{trial_id}")
        return running({ARCHITECTURE: json.dumps(spec)})

    def settings(self) -> dict:
        return {"space": self.space.get_config()}


class MacroHyperModel(keras_tuner.HyperModel):
    """Builds the NHN macro model of a trial's `"architecture"` value."""

    def __init__(self, default: str, input_shape, num_classes: int):
        super().__init__(name="nhn_macro")
        self.default = default
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    def build(self, hp):
        spec = json.loads(hp.Fixed(ARCHITECTURE, self.default))
        return build(spec, self.input_shape, self.num_classes)


class MacroTuner(SearchTuner, keras_tuner.Tuner):
    """Trains each macro candidate `steps` steps with `nhn_optimizer`.

    With `supernet=True` no candidate trains: a `MacroSupernet` trains
    `steps` steps once (random candidate per batch; its weights are saved
    to `<project>/supernet.weights.h5` and reloaded on resume) and each
    trial evaluates its candidate with the shared weights.

    Args:
        oracle: A `MacroSearchOracle`.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        steps: Training steps per candidate (or of the supernet).
        seed: Base seed of weights.
        supernet: Evaluate candidates on a weight-shared supernet.
        **kwargs: `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        oracle,
        input_shape,
        num_classes,
        steps: int,
        seed=0,
        supernet: bool = False,
        **kwargs,
    ):
        if int(steps) < 1:
            raise ValueError(f"`steps` must be >= 1; received {steps!r}.")
        default = oracle.hyperparameters.values[ARCHITECTURE]
        super().__init__(
            oracle=oracle,
            hypermodel=MacroHyperModel(default, input_shape, num_classes),
            **kwargs,
        )
        self.steps = int(steps)
        self.seed = int(seed)
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.supernet = None
        if supernet:
            keras.utils.set_random_seed(self.seed)
            self.supernet = MacroSupernet(
                oracle.space, input_shape, num_classes, total_steps=self.steps
            )
            self.supernet_path = os.path.join(self.project_dir, "supernet.weights.h5")
            if os.path.exists(self.supernet_path):
                self.supernet.model.load_weights(self.supernet_path)

    def _shared_trial(self, trial, train_data, eval_data):
        if not os.path.exists(self.supernet_path):
            batches = train_data.repeat().take(self.steps)
            self.supernet.train(batches, random.Random(f"{self.seed}-supernet"))
            save_weights_atomic(self.supernet.model, self.supernet_path)
        spec = json.loads(trial.hyperparameters.values[ARCHITECTURE])
        accuracy = self.supernet.evaluate(spec, eval_data)
        params = effective_params(build(spec, self.input_shape, self.num_classes))
        return {ACCURACY: accuracy, PARAMS: float(params)}

    def run_trial(self, trial, train_data, eval_data, verbose="auto", callbacks=None):
        """Trains (or, with the supernet, only evaluates) one candidate;
        returns `{"val_accuracy", "params"}`. A trained candidate's `fit`
        and `evaluate` get the search's `callbacks` (`trial_callbacks`)."""
        if self.supernet is not None:
            return self._shared_trial(trial, train_data, eval_data)
        callbacks = self.trial_callbacks(trial, callbacks)
        self.free_earlier_trials()
        keras.utils.set_random_seed(self.seed + int(trial.trial_id))
        model = self.hypermodel.build(trial.hyperparameters)
        self.train_classifier(
            model,
            nhn_optimizer(self.steps),
            train_data,
            self.steps,
            verbose=verbose,
            callbacks=callbacks,
        )
        _, accuracy = model.evaluate(eval_data, verbose=0, callbacks=callbacks)
        self.save_model(trial.trial_id, model)
        return {ACCURACY: float(accuracy), PARAMS: float(effective_params(model))}
