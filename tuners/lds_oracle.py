"""`LocationDirectionOracle`: the LDS population, cycle by cycle (Algorithm 1).

See `spzoo.tuners.location_direction` for the search; the operators are in
`spzoo.tuners.lds_operators`, the genes in `spzoo.nhn.addons`.
"""

import json
import random

import numpy as np
from keras_tuner.engine.trial import TrialStatus

from spzoo.nhn.spec import check
from spzoo.tuners.base import (
    ACCURACY,
    GAIN,
    SearchOracle,
    check_counts,
    idle,
    running,
    stopped,
)
from spzoo.tuners.lds_checkpoint import SharedWeightsVersions
from spzoo.tuners.lds_operators import (
    check_direction_rule,
    check_sparsity,
    generate_location,
    recombine,
)

CANDIDATE = "candidate"


class LocationDirectionOracle(SearchOracle):
    """Algorithm 1 as a KerasTuner oracle: location then direction search.

    Each trial is one member of the current cycle: its hyperparameter
    `"candidate"` is JSON `{"phase", "cycle", "slot", "gene",
    "weights_version"}` and it reports `val_accuracy`. A cycle's members are
    handed out one by one; when all ended, the population evolves.

    The oracle owns the shared add-on weights W (`spzoo.tuners.lds_checkpoint`):
    a trial starts from the version of W named in its candidate, and when it
    completes the oracle commits the next version, the current one plus the
    trial's update (`merged` records which version each trial made).

    Args:
        spec: The base (pruned) NHN spec.
        population_size: K (20); at least 10 (the best four recombine into
            five children and five are regenerated).
        location_cycles: T of the location search.
        direction_cycles: T of the direction search.
        sparsity: Direction sparsity (0.1), in (0, 1].
        direction_rule: `"sampled"` (default: connections drawn with
            probability proportional to their kernels' standard deviation)
            or `"threshold"` (the highest standard deviations, the paper's
            wording); see `generate_direction`.
        p_none: Probability of gene value -1 (0.8).
        seed: Random seed (the same search, killed and resumed or not).
    """

    search_name = "LDS"

    def __init__(
        self,
        spec: dict,
        population_size: int = 20,
        location_cycles: int = 3,
        direction_cycles: int = 1,
        sparsity: float = 0.1,
        p_none: float = 0.8,
        seed: int = 0,
        direction_rule: str = "sampled",
        **kwargs,
    ):
        check(spec)
        check_direction_rule(direction_rule)
        if not isinstance(population_size, int) or population_size < 10:
            raise ValueError(
                "`population_size` K must be an int >= 10 (the best 4 recombine "
                f"into 5 and 5 regenerate); received {population_size!r}."
            )
        check_counts(location_cycles=location_cycles, direction_cycles=direction_cycles)
        check_sparsity(sparsity)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"`seed` must be an int; received {seed!r}.")
        if not 0 <= p_none <= 1:
            raise ValueError(f"`p_none` must be in [0, 1]; received {p_none!r}.")
        total = population_size * (location_cycles + direction_cycles)
        super().__init__({CANDIDATE: "{}"}, max_trials=total, seed=seed, **kwargs)
        # KerasTuner draws a random seed for `seed=0`; keep the one asked for,
        # so that a search (and its resumption) is reproducible.
        self.seed = int(seed)
        self.spec = spec
        self.population_size = population_size
        self.location_cycles = location_cycles
        self.direction_cycles = direction_cycles
        self.sparsity = float(sparsity)
        self.p_none = float(p_none)
        self.direction_rule = direction_rule
        rng = random.Random(f"{seed}-init")
        self.phase = "location"
        self.cycle = 0
        self.members = [
            {
                "gene": generate_location(spec, rng, p_none),
                "trial": None,
                "origin": "new",
            }
            for _ in range(population_size)
        ]
        self.log = []  # one entry per finished cycle
        self.best_location = None
        self.best_direction = None  # {"trial", "seed", "accuracy"}
        self.weights_version = 0  # the current version of W
        self.merged = {}  # trial id -> the version of W its update made

    def _score(self, member, metric=None):
        """A member's rank: its gain over the base network on its own eval
        slice (`GAIN`), or its accuracy when the trial reported no gain;
        -1 (below any of them) for an unfinished trial."""
        trial = self.trials.get(member["trial"]) if member["trial"] else None
        if trial is None or trial.status != TrialStatus.COMPLETED:
            return -1.0
        if metric is None:
            metric = GAIN if trial.metrics.exists(GAIN) else ACCURACY
        return float(trial.metrics.get_last_value(metric))

    def _all_ended(self):
        return all(
            m["trial"] is not None and m["trial"] in self.end_order
            for m in self.members
        )

    def _evolve(self):
        rng = random.Random(f"{self.seed}-{self.phase}-{self.cycle}")
        ranked = sorted(self.members, key=self._score, reverse=True)
        scores = [self._score(m) for m in ranked]
        accuracies = [self._score(m, ACCURACY) for m in ranked]
        self.log.append(
            {
                "phase": self.phase,
                "cycle": self.cycle,
                "best_score": scores[0],
                "best_accuracy": accuracies[0],
                "mean_accuracy": float(np.mean(accuracies)),
                "best": ranked[0]["gene"],
            }
        )
        if self.phase == "location":
            if self.cycle + 1 >= self.location_cycles:
                self.best_location = ranked[0]["gene"]
                self.phase, self.cycle = "direction", 0
                self.members = [
                    {"gene": self.best_location, "trial": None, "origin": "direction"}
                    for _ in range(self.population_size)
                ]
                return
            keep = ranked[: self.population_size - 10]
            children = recombine([m["gene"] for m in ranked[:4]], rng)
            new = [
                {"gene": g, "trial": None, "origin": f"recombine{pair}"}
                for g, pair in children
            ] + [
                {
                    "gene": generate_location(self.spec, rng, self.p_none),
                    "trial": None,
                    "origin": "new",
                }
                for _ in range(5)
            ]
            self.members = [
                {"gene": m["gene"], "trial": None, "origin": "kept"} for m in keep
            ] + new
        else:
            best = ranked[0]
            if self.best_direction is None or scores[0] > self.best_direction.get(
                "score", self.best_direction["accuracy"]
            ):
                self.best_direction = {
                    "trial": best["trial"],
                    "accuracy": accuracies[0],
                    "score": scores[0],
                }
            if self.cycle + 1 >= self.direction_cycles:
                self.phase = "done"
                return
            for m in self.members:
                m["trial"] = None
        self.cycle += 1

    def populate_space(self, trial_id):
        if self.phase != "done" and self._all_ended():
            self._evolve()
        if self.phase == "done":
            return stopped()
        for slot, member in enumerate(self.members):
            if member["trial"] is None:
                member["trial"] = trial_id
                candidate = {
                    "phase": self.phase,
                    "cycle": self.cycle,
                    "slot": slot,
                    "gene": member["gene"],
                    "weights_version": self.weights_version,
                }
                return running({CANDIDATE: json.dumps(candidate)})
        return idle()

    def trial_ended(self, trial):
        if trial.status == TrialStatus.COMPLETED and trial.trial_id not in self.merged:
            self._commit(trial)
        if self.phase != "done" and self._all_ended():
            self._evolve()

    def _commit(self, trial):
        """Commits a completed trial's update of W as the next version."""
        versions = SharedWeightsVersions(self._project_dir)
        previous = self.weights_version
        self.weights_version = versions.commit(trial.trial_id, previous)
        self.merged[trial.trial_id] = self.weights_version
        # Kept: the versions a state saved before or after this commit names
        # (current, or where an ongoing trial or this one's retry starts).
        started = [
            json.loads(t.hyperparameters.values[CANDIDATE])["weights_version"]
            for t in [
                *self.ongoing_trials.values(),
                *(self.trials[i] for i in self._retry_queue),
                trial,
            ]
        ]
        versions.collect({previous, self.weights_version, *started})

    def settings(self) -> dict:
        """What a resumed search must keep (checked by `set_state`)."""
        return {
            "spec": self.spec,
            "population_size": self.population_size,
            "location_cycles": self.location_cycles,
            "direction_cycles": self.direction_cycles,
            "sparsity": self.sparsity,
            "p_none": self.p_none,
            "seed": self.seed,
            "direction_rule": self.direction_rule,
        }

    def get_state(self):
        state = super().get_state()
        state.update(
            {
                "phase": self.phase,
                "cycle": self.cycle,
                "members": self.members,
                "log": self.log,
                "best_location": self.best_location,
                "best_direction": self.best_direction,
                "weights_version": self.weights_version,
                "merged": self.merged,
            }
        )
        return state

    def saved_settings(self, state: dict) -> dict:
        saved = super().saved_settings(state)
        if "settings" not in state:  # written before settings were recorded
            saved.setdefault("population_size", len(state["members"]))
        return saved

    def reload(self):
        """Reloads the search; a running trial goes back to its tuner.

        KerasTuner queues the trials that were running for any tuner to run
        again; here each goes back to the tuner that ran it (its
        `KERASTUNER_TUNER_ID`): a restarted process runs it again from its
        version of W, and a worker that was still running it while the chief
        restarted ends it; no trial runs in two processes, none is committed
        twice.
        """
        super().reload()
        for tuner_id, trial_id in self._running_at_save.items():
            if trial_id in self._retry_queue:
                self._retry_queue.remove(trial_id)
                self.trials[trial_id].status = TrialStatus.RUNNING
                self.ongoing_trials[tuner_id] = self.trials[trial_id]

    def set_state(self, state):
        super().set_state(state)
        self._running_at_save = dict(state["ongoing_trials"])
        for key in ("phase", "cycle", "members", "log"):
            setattr(self, key, state[key])
        self.best_location = state["best_location"]
        self.best_direction = state["best_direction"]
        if "weights_version" not in state:
            raise ValueError(
                f"The LDS search in {self._project_dir!r} was written by an "
                "earlier spzoo (one shared_addons.weights.h5, no versions of the "
                "shared weights); start it afresh in another directory (or with "
                "--overwrite)."
            )
        self.weights_version = state["weights_version"]
        self.merged = state["merged"]
