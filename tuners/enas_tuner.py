"""`EnasTuner`: runs the trials of an `EnasOracle` on a weight-shared supernet.

The shared weights w are those of one `spzoo.nhn.macro_supernet.MacroSupernet`
(every op of every layer; a candidate assigns 0/1 choice vectors). A
shared-weights trial loads w as the trial it names left it (`"weights"`),
trains one minibatch per sampled architecture and writes w, with the
optimizer's state (the cosine schedule's position), to its own file
`<project>/supernet.trial_<id>.weights.h5`, atomically, before it reports.
A file is never changed once its trial completed, so a trial killed before
it ended runs again from the same w, and every process of a chief/worker
search (sharing the directory) reads the w a trial names. Older files are
deleted once a later shared-weights trial completed.

`run_enas_search` builds the oracle and the tuner, runs (or resumes) the
search on arrays and returns the best derived architecture.
"""

import glob
import os

import keras
import keras_tuner
import numpy as np

from spzoo.nhn.macro_supernet import MacroSupernet
from spzoo.nhn.masked import effective_params
from spzoo.nhn.model import build
from spzoo.tuners.base import (
    ACCURACY,
    PARAMS,
    SearchTuner,
    check_counts,
    check_resume,
    completed,
)
from spzoo.tuners.enas_oracle import EnasOracle, reward_name

INITIAL = "supernet.initial.weights.h5"
TRAIN_ACCURACY = "train_accuracy"


def minibatch(x, y, index: int, size: int, seed: int) -> tuple:
    """Minibatch `index` of a stream of shuffled passes over `(x, y)`.

    Pass `p` is the permutation `default_rng([seed, p])` of the examples;
    the stream is their concatenation, cut into minibatches of `size`.
    """
    n = len(x)
    positions = index * size + np.arange(size)
    out = np.empty(size, dtype="int64")
    for p in np.unique(positions // n):
        here = positions // n == p
        permutation = np.random.default_rng([seed, int(p)]).permutation(n)
        out[here] = permutation[positions[here] % n]
    return x[out], y[out]


class EnasTuner(SearchTuner, keras_tuner.Tuner):
    """Trains and evaluates the architectures an `EnasOracle` samples.

    Args:
        oracle: The `EnasOracle` (in every process of a chief/worker
            search: workers read its space and schedule).
        data: `(x_train, y_train, x_val, y_val)` NumPy arrays; the rewards
            and the derived candidates' accuracies are on the validation
            arrays (ENAS: 5,000 images held out of the training set).
        batch_size: Training minibatch size (NHN, ENAS: 100 / 128).
        eval_batch_size: Validation minibatch size (one per reward).
        derive_batches: Validation minibatches of each derived candidate
            (ENAS: 1), the same ones for every candidate.
        seed: Seed of the supernet's initial weights and of the shuffling.
        progress: Print one line per finished trial.
        **kwargs: `keras_tuner.Tuner` arguments (`directory`, `project_name`,
            `overwrite`).
    """

    def __init__(
        self,
        oracle: EnasOracle,
        data,
        batch_size: int = 100,
        eval_batch_size: int = 100,
        derive_batches: int = 1,
        seed: int = 0,
        progress: bool = False,
        **kwargs,
    ):
        if not isinstance(oracle, EnasOracle):
            raise ValueError(f"`oracle` must be an EnasOracle; received {oracle!r}.")
        if len(data) != 4 or any(len(data[i]) != len(data[i + 1]) for i in (0, 2)):
            raise ValueError(
                "`data` must be `(x_train, y_train, x_val, y_val)` with as many "
                "labels as examples."
            )
        check_counts(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            derive_batches=derive_batches,
        )
        # Set before KerasTuner's __init__, which reloads a search (set_state);
        # on a worker `self.oracle` becomes a client of the chief's oracle.
        self.enas = oracle
        self.space = oracle.space
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.derive_batches = derive_batches
        self.seed = int(seed)
        self.progress = bool(progress)
        self.num_classes = int(max(np.max(data[1]), np.max(data[3])) + 1)
        keras.utils.set_random_seed(self.seed)
        self.supernet = MacroSupernet(
            oracle.space,
            data[0].shape[1:],
            self.num_classes,
            total_steps=oracle.epochs * oracle.shared_steps,
        )
        model = self.supernet.model
        model.optimizer.build(model.trainable_variables)
        self._loaded = "unknown"  # the trial whose w the supernet holds
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)

    def settings(self) -> dict:
        """What a resumed search must keep (checked by `set_state`)."""
        x_train, _, x_val, _ = self.data
        return {
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "derive_batches": self.derive_batches,
            "tuner_seed": self.seed,
            "train_examples": len(x_train),
            "val_examples": len(x_val),
        }

    def get_state(self):
        return {**super().get_state(), "settings": self.settings()}

    def set_state(self, state):
        super().set_state(state)
        if "settings" in state:
            check_resume("ENAS", state["settings"], self.settings())

    # The shared weights w, one file per shared-weights trial.

    def weights_path(self, trial_id) -> str:
        """Where w is written after a shared-weights trial (None: initial)."""
        name = INITIAL if trial_id is None else f"supernet.trial_{trial_id}.weights.h5"
        return os.path.join(self.project_dir, name)

    def _restore(self, trial_id) -> None:
        """Makes the supernet hold w as trial `trial_id` left it."""
        if self._loaded == trial_id:
            return
        self.supernet.load(self.weights_path(trial_id))
        self._loaded = trial_id

    def on_search_begin(self):
        super().on_search_begin()
        if not os.path.exists(self.weights_path(None)):
            self.supernet.save(self.weights_path(None))  # the same in every process

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        task = self.enas.trial_task(trial)
        if task["phase"] == "shared" and self._completed(trial.trial_id):
            keep = os.path.basename(self.weights_path(trial.trial_id))
            pattern = os.path.join(self.project_dir, "supernet.trial_*.weights.h5")
            for path in glob.glob(pattern):
                if os.path.basename(path) != keep:
                    os.remove(path)
        if self.progress:
            self._report(trial, task)

    def _completed(self, trial_id) -> bool:
        if self._is_worker():
            return self.oracle.get_trial(trial_id).status == "COMPLETED"
        return completed(self.oracle, trial_id)

    def _report(self, trial, task) -> None:
        metrics = trial.metrics
        if not metrics.exists(ACCURACY):
            return
        accuracy = metrics.get_last_value(ACCURACY)
        epoch = f"epoch {task['epoch'] + 1}/{self.enas.epochs}"
        if task["phase"] == "shared":
            line = (
                f"ENAS {epoch}: shared weights trained {len(task['samples'])} steps "
                f"(train accuracy {metrics.get_last_value(TRAIN_ACCURACY):.4f})"
            )
        elif task["phase"] == "controller":
            line = (
                f"ENAS {epoch}, controller step {task['step'] + 1}/"
                f"{self.enas.controller_steps}: mean reward {accuracy:.4f}"
            )
        else:
            line = (
                f"ENAS derive {task['step'] + 1}/{self.enas.derive_samples}: "
                f"val_accuracy {accuracy:.4f}"
            )
        print(line, flush=True)

    # Trials.

    def _val_batch(self, index: int) -> tuple:
        _, _, x, y = self.data
        return minibatch(x, y, index, min(self.eval_batch_size, len(x)), self.seed + 1)

    def run_trial(self, trial, *args, **kwargs):
        task = self.enas.trial_task(trial)
        specs = [self.space.decode(s["ops"], s["skips"]) for s in task["samples"]]
        self._restore(task["weights"])
        first = task["first_batch"]
        if task["phase"] == "shared":
            x_train, y_train, _, _ = self.data
            self._loaded = "unknown"  # w changes from here on
            accuracies = [
                self.supernet.train_batch(
                    spec,
                    *minibatch(x_train, y_train, first + k, self.batch_size, self.seed),
                )
                for k, spec in enumerate(specs)
            ]
            self.supernet.save(self.weights_path(trial.trial_id))
            self._loaded = trial.trial_id
            x, y = self._val_batch(task["epoch"])
            return {
                ACCURACY: self.supernet.evaluate_batch(specs[-1], x, y),
                TRAIN_ACCURACY: float(np.mean(accuracies)),
            }
        if task["phase"] == "controller":
            rewards = {
                reward_name(i): self.supernet.evaluate_batch(
                    spec, *self._val_batch(first + i)
                )
                for i, spec in enumerate(specs)
            }
            return {ACCURACY: float(np.mean(list(rewards.values()))), **rewards}
        spec = specs[0]
        accuracy = float(
            np.mean(
                [
                    self.supernet.evaluate_batch(spec, *self._val_batch(first + i))
                    for i in range(self.derive_batches)
                ]
            )
        )
        model = build(spec, self.data[0].shape[1:], self.num_classes)
        return {ACCURACY: accuracy, PARAMS: float(effective_params(model))}


def run_enas_search(
    space,
    data,
    directory: str,
    project_name: str = "macro_enas",
    epochs: int = 4,
    shared_steps: int = 100,
    controller_steps: int = 10,
    controller_aggregate: int = 5,
    derive_samples: int = 10,
    batch_size: int = 100,
    eval_batch_size: int = 100,
    derive_batches: int = 1,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Runs (or resumes) an ENAS macro search; returns its result.

    Args:
        space: The `MacroSpace`.
        data: `(x_train, y_train, x_val, y_val)` arrays.
        directory: KerasTuner directory; the project is `project_name`.
        epochs, shared_steps, controller_steps, controller_aggregate,
            derive_samples: The `EnasOracle`'s schedule.
        batch_size, eval_batch_size, derive_batches: The `EnasTuner`'s.
        seed: Seed of the controller, the supernet and the shuffling.
        progress: One line per finished trial.
        overwrite: Start afresh instead of resuming.

    Returns:
        `{"spec", "best_trial", "search_accuracy", "trials", "controller"}`
        (on a chief/worker worker: `None`): the best derived candidate's
        spec and validation accuracy with the shared weights, the number of
        trials and the controller's log (one entry per update).
    """
    oracle = EnasOracle(
        space,
        epochs=epochs,
        shared_steps=shared_steps,
        controller_steps=controller_steps,
        controller_aggregate=controller_aggregate,
        derive_samples=derive_samples,
        seed=seed,
    )
    tuner = EnasTuner(
        oracle,
        data,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        derive_batches=derive_batches,
        seed=seed,
        progress=progress,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )
    tuner.search(verbose=0)
    if tuner._is_worker():
        return None
    best = oracle.get_best_trials(1)[0]
    return {
        "spec": oracle.architecture(best.trial_id),
        "best_trial": best.trial_id,
        "search_accuracy": best.score,
        "trials": len(oracle.trials),
        "controller": oracle.log,
    }
