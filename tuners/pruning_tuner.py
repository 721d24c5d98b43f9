"""`PruningTuner`: trains, prunes and fine-tunes the pruning NAS's networks."""

import json
import os

import keras
from keras_tuner.engine.base_tuner import BaseTuner

from spzoo import metrics
from spzoo.models import build_resnet
from spzoo.training import atomic_write_text, paper_optimizer, save_model_atomic
from spzoo.tuners.base import ACCURACY, PARAMS, SearchTuner
from spzoo.tuners.pruning_oracle import REMOVABLE
from spzoo.tuners.pruning_surgery import importance, masked_channels, prune_step

MODEL_FILE = "model.keras"
RECORD_FILE = "pruning.json"


def finetune_optimizer(phase_steps: int, rates=(2e-3, 4e-4)):
    """SGD (momentum 0.9, weight decay 5e-4) at `rates[i]` for phase `i`."""
    optimizer = paper_optimizer(len(rates) * phase_steps, rates[0])
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [phase_steps * i for i in range(1, len(rates))], list(rates)
    )
    optimizer.learning_rate = schedule
    return optimizer


class PruningTuner(SearchTuner, BaseTuner):
    """Runs the pruning NAS's iterations (see the module docstring).

    Args:
        oracle: A `PruningOracle`.
        input_shape: `(H, W, C)` of one example.
        num_classes: Number of classes.
        base_steps: Training steps of the starting network (trial 0).
        finetune_steps: Steps per fine-tune phase (None: one epoch).
        seed: Seed of the weights.
        **kwargs: `BaseTuner` arguments (`directory`, `project_name`, ...).
    """

    def __init__(
        self,
        oracle,
        input_shape,
        num_classes: int,
        base_steps: int,
        finetune_steps: int | None = None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.base_steps = int(base_steps)
        self.finetune_steps = finetune_steps
        self.seed = int(seed)

    def _fit(self, model, optimizer, train_data, steps, verbose, callbacks=None):
        self.train_classifier(
            model,
            optimizer,
            train_data,
            steps,
            verbose=verbose,
            jit_compile=False,
            callbacks=callbacks,
        )

    def run_trial(self, trial, train_data, eval_data, verbose="auto", callbacks=None):
        """One iteration: train (iteration 0) or prune + fine-tune; the
        search's `callbacks` see it (`SearchTuner.trial_callbacks`)."""
        callbacks = self.trial_callbacks(trial, callbacks)
        values = trial.hyperparameters.values
        scope = values.get("scope", "inner")
        keras.utils.set_random_seed(self.seed + int(values["iteration"]))
        record = {"iteration": int(values["iteration"]), "parent": values["parent"]}
        if not values["parent"]:
            spec = json.loads(values["spec"])
            model = build_resnet(spec, self.input_shape, self.num_classes)
            self._fit(
                model,
                paper_optimizer(self.base_steps),
                train_data,
                self.base_steps,
                verbose,
                callbacks,
            )
            record["removed"] = {}
        else:
            parent_dir = self.get_trial_dir(values["parent"])
            with open(os.path.join(parent_dir, RECORD_FILE)) as f:
                spec = json.load(f)["spec"]
            parent = keras.models.load_model(os.path.join(parent_dir, MODEL_FILE))
            model, spec, remove, scores = prune_step(
                parent,
                spec,
                self.input_shape,
                self.num_classes,
                int(values["num_remove"]),
                values.get("importance", "l2"),
                scope,
            )
            phase = self.finetune_steps or int(train_data.cardinality())
            self._fit(
                model,
                finetune_optimizer(phase),
                train_data,
                2 * phase,
                verbose,
                callbacks,
            )
            record["removed"] = {
                prefix: [scores[prefix][1][c] for c in channels]
                for prefix, channels in remove.items()
            }
        _, accuracy = model.evaluate(eval_data, verbose=0, callbacks=callbacks)
        scores = importance(model, spec, scope=scope)
        gone = masked_channels(model, spec) if scope == "all" else {}
        record.update(
            {
                "spec": spec,
                ACCURACY: float(accuracy),
                PARAMS: metrics.count_params(model),
                "neurons": int(
                    sum(
                        phi.size - len(gone.get(k, ()))
                        for k, (phi, _) in scores.items()
                    )
                ),
                "importance": {
                    prefix: {"phi": phi.tolist(), "types": types}
                    for prefix, (phi, types) in scores.items()
                },
            }
        )
        trial_dir = self.get_trial_dir(trial.trial_id)
        save_model_atomic(model, os.path.join(trial_dir, MODEL_FILE))
        atomic_write_text(
            os.path.join(trial_dir, RECORD_FILE), json.dumps(record) + "\n"
        )
        removable = record["neurons"] - len(scores)
        return {
            ACCURACY: float(accuracy),
            PARAMS: float(record[PARAMS]),
            REMOVABLE: float(removable),
        }

    def load_model(self, trial):
        """The (pruned) model a trial saved."""
        return keras.models.load_model(
            os.path.join(self.get_trial_dir(trial.trial_id), MODEL_FILE)
        )

    def save_model(self, trial_id, model, step=0):
        save_model_atomic(model, os.path.join(self.get_trial_dir(trial_id), MODEL_FILE))
