"""`LDSTuner`: trains LDS candidates on the shared add-on weights, resumably.

See `spzoo.tuners.location_direction` for the search and
`spzoo.tuners.lds_checkpoint` for the versions of the shared weights W,
which the oracle owns (on the chief of a chief/worker search).
"""

import json
import os

import keras_tuner
import numpy as np

from spzoo.io import atomic_path
from spzoo.nhn.addon_supernet import SharedAddOns
from spzoo.nhn.addons import gene_addons
from spzoo.tuners.base import ACCURACY, GAIN, SearchTuner, check_resume
from spzoo.tuners.lds_checkpoint import SharedWeightsVersions
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

    A trial loads the version of W its candidate names, trains it and writes
    its update, which the oracle commits as the next version when it records
    the trial as completed (`spzoo.tuners.lds_checkpoint`); so a killed
    search resumes exactly, and workers of a chief/worker search (KerasTuner's
    `KERASTUNER_*` variables) share one W. After `search`, `shared` holds
    the last version (not on a worker). The settings below, the data sizes
    and the supernet's schedule must be those the search started with (else
    `ValueError`).

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
        # On a worker `self.oracle` becomes KerasTuner's client of the chief's
        # oracle; this one (built with the same arguments) gives the settings.
        self.lds = oracle
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
        self.versions = SharedWeightsVersions(self.project_dir)
        if not self._is_worker():
            self.versions.initialize(shared.state())
            self._load_current()

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

    def _load_current(self) -> None:
        """Loads the oracle's current version of W into `shared`."""
        self.shared.restore(self.versions.read(self.oracle.weights_version))

    def search(self, *args, **kwargs):
        super().search(*args, **kwargs)
        if not self._is_worker():  # the search's W, as the oracle committed it
            self._load_current()

    def on_search_begin(self):
        super().on_search_begin()
        self.save()  # from now on a re-run reloads this search

    def _report(self, candidate: dict, accuracy: float, gain: float) -> None:
        """One progress line per trained member."""
        phase = candidate["phase"]
        cycles = (
            self.lds.location_cycles
            if phase == "location"
            else self.lds.direction_cycles
        )
        print(
            f"LDS {phase} cycle {candidate['cycle'] + 1}/{cycles}, member "
            f"{candidate['slot'] + 1}/{self.lds.population_size}: accuracy "
            f"{accuracy:.4f}, gain over the base {gain:+.4f} (shared weights "
            f"version {candidate['weights_version']})",
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
        start = self.versions.read(candidate["weights_version"])
        self.shared.restore(start)
        directions = None
        if candidate["phase"] == "direction":
            rng = np.random.default_rng([int(self.lds.seed), int(trial.trial_id)])
            directions = generate_direction(
                gene_addons(gene, self.shared.spec),
                self.shared.kernel_stds(),
                self.lds.sparsity,
                rng,
                rule=self.lds.direction_rule,
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
        self.versions.write_update(trial.trial_id, start, self.shared.state())
        gain = accuracy - self._base_accuracy[slot]
        if self.progress:
            self._report(candidate, accuracy, gain)
        return {ACCURACY: accuracy, GAIN: gain}

    def load_direction(self, trial_id) -> dict:
        with np.load(self.direction_path(trial_id)) as f:
            return {k: f[k] for k in f.files}
