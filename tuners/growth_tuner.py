"""`GrowthTuner`: trains and evaluates the growth NAS's architectures.

The architecture of a trial is its `"architecture"` hyperparameter value (a
JSON growth spec), so `Tuner.load_model(trial)` rebuilds the trained network
from the trial alone. Each trial trains with the paper's recipe
(`spzoo.training.paper_optimizer`: SGD momentum 0.9, lr 0.01 x0.2 at each
30% of the steps, weight decay 5e-4) and reports `val_accuracy` and
`params`; `GrowthOracle` turns them into epsilon.
"""

import os

import keras
import keras_tuner
from spzoo.tuners.growth_oracle import ACCURACY, ARCHITECTURE, PARAMS, GrowthOracle

from spzoo import metrics
from spzoo.models.growth import build_growth
from spzoo.training import paper_optimizer


class GrowthHyperModel(keras_tuner.HyperModel):
    """Builds the growth network a trial's `"architecture"` value describes.

    Args:
        default: The JSON spec used when no value is set (the initial space).
        input_shape: `(H, W, C)` of one example.
        num_classes: Number of classes.
    """

    def __init__(self, default: str, input_shape, num_classes: int):
        super().__init__(name="growth")
        self.default = default
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    def build(self, hp):
        spec = hp.Fixed(ARCHITECTURE, self.default)
        return build_growth(spec, self.input_shape, self.num_classes)


class GrowthTuner(keras_tuner.Tuner):
    """A KerasTuner `Tuner` for the growth NAS.

    Args:
        oracle: A `GrowthOracle`.
        input_shape: `(H, W, C)` of one example.
        num_classes: Number of classes.
        steps: Training steps per trial.
        epochs: Epochs the steps are spread over.
        seed: Base seed of weights (plus the trial number).
        **kwargs: `keras_tuner.Tuner` arguments (`directory`,
            `project_name`, `overwrite`, ...).
    """

    def __init__(
        self,
        oracle,
        input_shape,
        num_classes: int,
        steps: int,
        epochs: int = 10,
        seed: int = 0,
        **kwargs,
    ):
        if int(steps) < 1 or int(epochs) < 1:
            raise ValueError(
                f"`steps` and `epochs` must be >= 1; received {steps!r}, {epochs!r}."
            )
        default = (
            oracle.hyperparameters.values[ARCHITECTURE]
            if isinstance(oracle, GrowthOracle)
            else "{}"
        )
        super().__init__(
            oracle=oracle,
            hypermodel=GrowthHyperModel(default, input_shape, num_classes),
            **kwargs,
        )
        self.steps = int(steps)
        self.epochs = int(epochs)
        self.seed = int(seed)

    def run_trial(self, trial, train_data, eval_data, verbose="auto"):
        """Trains one architecture; returns `{"val_accuracy", "params"}`.

        Args:
            trial: The KerasTuner trial.
            train_data: Batched `tf.data.Dataset` of `(x, y)` (repeated here).
            eval_data: Batched evaluation dataset.
            verbose: Keras verbosity of `fit`.
        """
        keras.utils.set_random_seed(self.seed + int(trial.trial_id))
        model = self.hypermodel.build(trial.hyperparameters)
        model.compile(
            optimizer=paper_optimizer(self.steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        steps_per_epoch = -(-self.steps // self.epochs)
        model.fit(
            train_data.repeat(),
            epochs=self.epochs,
            steps_per_epoch=steps_per_epoch,
            verbose=verbose,
        )
        _, accuracy = model.evaluate(eval_data, verbose=0)
        self.save_model(trial.trial_id, model)
        return {ACCURACY: float(accuracy), PARAMS: float(metrics.count_params(model))}

    def save_model(self, trial_id, model, step=0):
        """Writes the trial's weights atomically where `load_model` reads them."""
        path = self._get_checkpoint_fname(trial_id)
        tmp = path.replace(".weights.h5", f".{os.getpid()}.tmp.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, path)
