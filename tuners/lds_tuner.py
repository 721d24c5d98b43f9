"""`LDSTuner`: trains LDS candidates on the shared add-on weights, resumably.

See `spzoo.tuners.location_direction` for the search and the checkpoint
protocol of the shared weights W.
"""

import json
import os

import keras_tuner
import numpy as np

from spzoo.io import atomic_path
from spzoo.nhn.addon_supernet import SharedAddOns
from spzoo.nhn.addons import gene_addons
from spzoo.tuners.base import ACCURACY, GAIN, SearchTuner, check_resume, completed
from spzoo.tuners.lds_checkpoint import SharedWeightsCheckpoint
from spzoo.tuners.lds_operators import generate_direction
from spzoo.tuners.lds_oracle import CANDIDATE, LocationDirectionOracle


class LDSTuner(SearchTuner, keras_tuner.Tuner):
    """Trains LDS candidates on the shared supernet.

    Member `slot` of a cycle trains on training batches
    `slot*M .. (slot+1)*M - 1` of the cycle's pass over the training set
    and is evaluated on test batches `slot*N .. (slot+1)*N - 1` (wrapping);
    it reports `val_accuracy` and `val_gain`, the accuracy minus the frozen
    base network's on the same batches. The direction masks each trial drew
    go to `<project>/directions/`.

    The shared weights W are checkpointed after every trial (see
    `spzoo.tuners.lds_checkpoint`), so that a killed search resumes
    exactly. The settings below, the data sizes and the supernet's schedule
    must be those the search started with (else `ValueError`).

    Args:
        oracle: A `LocationDirectionOracle`.
        shared: The `SharedAddOns` supernet (of the oracle's spec).
        data: `(x_train, y_train, x_eval, y_eval)` NumPy arrays.
        steps: M, training iterations per member and cycle.
        batch_size: Training batch size (the paper: 100).
        eval_batches: N (1) ...
        eval_batch_size: ... of this size (the paper: 500).
        progress: Print one line per finished member (phase, cycle, member,
            accuracy, gain over the base).
        **kwargs: `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        oracle,
        shared,
        data,
        steps: int = 25,
        batch_size: int = 100,
        eval_batches: int = 1,
        eval_batch_size: int = 500,
        progress: bool = False,
        **kwargs,
    ):
        if not isinstance(oracle, LocationDirectionOracle):
            raise ValueError(
                f"`oracle` must be a LocationDirectionOracle; received {oracle!r}."
            )
        if not isinstance(shared, SharedAddOns) or shared.spec != oracle.spec:
            raise ValueError(
                "`shared` must be the SharedAddOns supernet of the oracle's spec."
            )
        if len(data) != 4 or any(len(data[i]) != len(data[i + 1]) for i in (0, 2)):
            raise ValueError(
                "`data` must be `(x_train, y_train, x_eval, y_eval)` with as many "
                "labels as examples."
            )
        for arg, value in (
            ("steps", steps),
            ("batch_size", batch_size),
            ("eval_batches", eval_batches),
            ("eval_batch_size", eval_batch_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"`{arg}` must be an int >= 1; received {value!r}.")
        # Set before KerasTuner's __init__, which reloads a search (set_state).
        self.shared = shared
        self.data = data
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.eval_batches = int(eval_batches)
        self.eval_batch_size = int(eval_batch_size)
        self.resumed = False
        self.progress = bool(progress)
        self._base_accuracy = {}  # eval slot -> frozen base accuracy there
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.checkpoint = SharedWeightsCheckpoint(self.project_dir, shared)
        self.checkpoint.recover(self._completed, self.resumed)

    def settings(self) -> dict:
        """What a resumed search must keep (checked by `set_state`)."""
        x_train, _, x_eval, _ = self.data
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "eval_batches": self.eval_batches,
            "eval_batch_size": self.eval_batch_size,
            "train_examples": len(x_train),
            "eval_examples": len(x_eval),
            **self.shared.settings(),
        }

    def get_state(self):
        return {**super().get_state(), "settings": self.settings()}

    def set_state(self, state):
        super().set_state(state)
        if "settings" in state:
            check_resume("LDS", state["settings"], self.settings())
        self.resumed = True

    def _completed(self, trial_id) -> bool:
        return trial_id in self.oracle.end_order and completed(self.oracle, trial_id)

    def on_search_begin(self):
        super().on_search_begin()
        self.checkpoint.begin()
        self.save()  # from now on a re-run reloads this search

    def on_trial_end(self, trial):
        self.oracle.end_trial(trial)
        self.checkpoint.end(trial.trial_id, self._completed(trial.trial_id))
        self.save()
        if self.progress and self._completed(trial.trial_id):
            self._report(trial)

    def _report(self, trial) -> None:
        """One progress line per finished member."""
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE])
        phase = candidate["phase"]
        cycles = (
            self.oracle.location_cycles
            if phase == "location"
            else self.oracle.direction_cycles
        )
        metrics = trial.metrics
        gain = metrics.get_last_value(GAIN) if metrics.exists(GAIN) else None
        print(
            f"LDS {phase} cycle {candidate['cycle'] + 1}/{cycles}, member "
            f"{candidate['slot'] + 1}/{self.oracle.population_size}: accuracy "
            f"{metrics.get_last_value(ACCURACY):.4f}"
            + ("" if gain is None else f", gain over the base {gain:+.4f}"),
            flush=True,
        )

    @staticmethod
    def _slice(x, y, start, count):
        idx = (start + np.arange(count)) % len(x)
        return x[idx], y[idx]

    def direction_path(self, trial_id) -> str:
        return os.path.join(self.project_dir, "directions", f"{trial_id}.npz")

    def run_trial(self, trial, *args, **kwargs):
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE])
        gene, slot = candidate["gene"], candidate["slot"]
        directions = None
        if candidate["phase"] == "direction":
            rng = np.random.default_rng([int(self.oracle.seed), int(trial.trial_id)])
            directions = generate_direction(
                gene_addons(gene, self.shared.spec),
                self.shared.kernel_stds(),
                self.oracle.sparsity,
                rng,
                rule=self.oracle.direction_rule,
            )
            path = self.direction_path(trial.trial_id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_path(path) as tmp:
                np.savez(tmp, **directions)
        x_train, y_train, x_eval, y_eval = self.data
        m = self.eval_batches * self.eval_batch_size
        xe, ye = self._slice(x_eval, y_eval, slot * m, min(m, len(x_eval)))
        if slot not in self._base_accuracy:  # the frozen base: no add-on at all
            self.shared.assign([-1] * len(gene), None)
            self._base_accuracy[slot] = self.shared.evaluate(xe, ye)
        self.shared.assign(gene, directions)
        n = self.steps * self.batch_size
        x, y = self._slice(x_train, y_train, slot * n, n)
        self.shared.train(x, y, self.batch_size)
        accuracy = self.shared.evaluate(xe, ye)
        self.checkpoint.write_pending(trial.trial_id)
        return {ACCURACY: accuracy, GAIN: accuracy - self._base_accuracy[slot]}

    def load_direction(self, trial_id) -> dict:
        with np.load(self.direction_path(trial_id)) as f:
            return {k: f[k] for k in f.files}
