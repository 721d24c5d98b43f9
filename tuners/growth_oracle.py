"""`GrowthOracle`: aging evolution for the growth NAS (Algorithm 1).

Lee & Wang, "Growth NAS Search Algorithm", Algorithm 1 (Fig. 7):

    history <- []
    while |history| < n(P):                      # P_init
        history += TrainAndEval(RandomModel)
    fit the trade-off k on history
    while |history| < n_iter:
        population <- history[-n(P):]            # the oldest leaves
        sample <- n(S) random members of population
        parent <- highest epsilon in sample
        history += TrainAndEval(Grow(parent))
    return the highest-epsilon model of history

The metric (Evaluation Procedure): `epsilon = alpha_bar / eta_bar**k` with
`alpha_bar = alpha / alpha_init` (accuracy over the mean accuracy of
P_init) and `eta_bar = eta / eta_init` (parameters over the mean parameters
of P_init); `k` is the least-squares fit of `k = -log(alpha_bar) /
log(eta_bar)` on P_init, i.e. the `k` minimising
`sum_i (k * log(eta_bar_i) + log(alpha_bar_i))**2`:

    k = -sum_i log(alpha_bar_i) log(eta_bar_i) / sum_i log(eta_bar_i)**2

The search also stops when a child exceeds `n_op_max` conv ops.

KerasTuner runs the trials: the history is KerasTuner's own record of
completed trials in the order they ended (`end_order`), so it survives a
crash with the trials; the oracle's own state (the fitted k, each child's
parent and sample, the stop reason) goes through `get_state`/`set_state`.
Each trial's architecture is the hyperparameter value `"architecture"`, a
JSON growth spec. Trials report `val_accuracy` and `params`; the oracle
scores them with epsilon (after k is fitted; the initial population is
rescored then).

With weight inheritance (`inherit_fraction`), each trial also carries its
parent's id as the hyperparameter value `"parent"` (`""` for a random
initial model): a tuner (a worker included, which has no oracle state)
starts the child from that trial's weights (`spzoo.tuners.growth_inherit`)
and trains `inherit_fraction` of the steps. The fraction is one of the
settings a resumed search must keep.
"""

import json
import random
from datetime import datetime

import numpy as np
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.src.engine import oracle as oracle_module

from spzoo.tuners.base import (
    ACCURACY,
    ARCHITECTURE,
    PARAMS,
    SearchOracle,
    check_counts,
    completed,
    idle,
    running,
    stopped,
)
from spzoo.tuners.growth_space import GrowthSpace, spec_ops

__all__ = [
    "ACCURACY",
    "ARCHITECTURE",
    "INHERITED",
    "PARAMS",
    "PARENT",
    "PRESERVING",
    "TRAIN_STEPS",
    "GrowthOracle",
    "epsilon",
]

# The hyperparameter naming a child's parent trial, with weight inheritance,
# and what a trial reports about how it started (1.0 or 0.0; steps trained).
PARENT = "parent"
INHERITED = "inherited"
PRESERVING = "function_preserving"
TRAIN_STEPS = "train_steps"


def fit_tradeoff(accuracies, params) -> tuple:
    """Least-squares fit of k on the initial population.

    Args:
        accuracies: alpha of each model of P_init.
        params: eta (parameter count) of each model of P_init.

    Returns:
        `(k, alpha_init, eta_init)`: the fitted k and the two means. `k` is
        0 when all models have the same parameter count (nothing to fit).
    """
    alpha = np.asarray(accuracies, dtype="float64")
    eta = np.asarray(params, dtype="float64")
    if alpha.size == 0 or alpha.shape != eta.shape:
        raise ValueError(
            "`accuracies` and `params` must be non-empty and of equal length; "
            f"received {alpha.size} and {eta.size}."
        )
    if np.any(alpha <= 0) or np.any(eta <= 0):
        raise ValueError("Accuracies and parameter counts must be > 0 to fit k.")
    alpha_init, eta_init = float(alpha.mean()), float(eta.mean())
    x = np.log(eta / eta_init)
    y = -np.log(alpha / alpha_init)
    denominator = float(np.sum(x * x))
    k = float(np.sum(x * y) / denominator) if denominator > 0 else 0.0
    return k, alpha_init, eta_init


def epsilon(accuracy, params, k, alpha_init, eta_init) -> float:
    """The cost-accuracy metric `(alpha / alpha_init) / (eta / eta_init)**k`."""
    return (accuracy / alpha_init) / (params / eta_init) ** k


class GrowthDisplay(oracle_module.Display):
    """KerasTuner's progress display, with the growth NAS's own numbers.

    Each trial shows its origin (random or the parent's id) and size; each
    finished trial its accuracy, parameters and epsilon (the score).
    """

    def show_hyperparameter_table(self, trial):
        parent = self.oracle.origins.get(trial.trial_id, {}).get("parent")
        spec = json.loads(trial.hyperparameters.values[ARCHITECTURE])
        print(
            f"architecture: {spec_ops(spec)} ops, "
            + (
                "random (initial population)"
                if parent is None
                else f"Grow(trial {parent})"
                + (", inherits its weights" if self.oracle.inherit_fraction else "")
            )
        )

    def on_trial_end(self, trial):
        if self.verbose < 1:
            return
        duration = self.format_duration(
            datetime.now() - self.trial_start[trial.trial_id]
        )
        print(f"Trial {self.trial_number[trial.trial_id]} {trial.status} [{duration}]")
        if trial.status == TrialStatus.COMPLETED:
            accuracy, params = self.oracle.metrics_of(trial.trial_id)
            k = "not fitted yet" if self.oracle.k is None else f"{self.oracle.k:.4g}"
            print(
                f"val_accuracy: {accuracy:.4f}, params: {params:,.0f}, "
                f"epsilon: {trial.score:.4f} (k {k})"
            )
            inherited = self.oracle.inheritance_of(trial.trial_id)
            if inherited is not None:
                print(f"weights: {inherited}")
        best = self.oracle.best_trial_ids(1)
        if best:
            print(
                f"Best epsilon so far: {self.oracle.epsilon_of(best[0]):.4f} "
                f"(trial {best[0]})"
            )
        elapsed = self.format_duration(datetime.now() - self.search_start)
        print(f"Total elapsed time: {elapsed}")


class GrowthOracle(SearchOracle):
    """Aging (regularized) evolution over growth specs, as Algorithm 1.

    Args:
        space: The `GrowthSpace` (N_F, N_B, ops, procedures).
        population_size: n(P), default 100.
        sample_size: n(S), default 25; must be <= n(P).
        num_iterations: n_iter, models evaluated in all (P_init included),
            default 500.
        max_ops: n_op_max, the search stops when a child has more conv
            ops, default 100.
        initial_growth: N_G_init, up to this many growth procedures per
            block of a random initial model, default 10.
        search_blocks: N_B_search, blocks grown per child, default 1.
        search_growth: N_G_search, procedures per grown block, default 1.
        k: Fix the trade-off exponent instead of fitting it (None: fit).
        inherit_fraction: Weight inheritance: a child starts from its
            parent's trained weights and trains this share of the steps, in
            (0, 1]; None (default) trains every child from scratch.
        max_trials: KerasTuner's trial limit (default `num_iterations`;
            the smaller of the two applies).
        seed: Random seed; each trial's random choices are drawn from
            `Random(f"{seed}-{trial_id}")`, so a re-run makes the same ones.
        **kwargs: Other `keras_tuner.Oracle` arguments
            (`max_retries_per_trial`, `max_consecutive_failed_trials`).
    """

    search_name = "growth"

    def __init__(
        self,
        space: GrowthSpace,
        population_size: int = 100,
        sample_size: int = 25,
        num_iterations: int = 500,
        max_ops: int = 100,
        initial_growth: int = 10,
        search_blocks: int = 1,
        search_growth: int = 1,
        k: float | None = None,
        inherit_fraction: float | None = None,
        max_trials: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(space, GrowthSpace):
            raise ValueError(f"`space` must be a GrowthSpace; received {space!r}.")
        check_counts(
            population_size=population_size,
            sample_size=sample_size,
            num_iterations=num_iterations,
            max_ops=max_ops,
            search_blocks=search_blocks,
            search_growth=search_growth,
        )
        if not isinstance(initial_growth, int) or initial_growth < 0:
            raise ValueError(
                f"`initial_growth` must be an int >= 0; received {initial_growth!r}."
            )
        if sample_size > population_size:
            raise ValueError(
                f"`sample_size` n(S)={sample_size} must be <= `population_size` "
                f"n(P)={population_size}."
            )
        if num_iterations < population_size:
            raise ValueError(
                f"`num_iterations` n_iter={num_iterations} must be >= "
                f"`population_size` n(P)={population_size}."
            )
        total_blocks = 3 * space.blocks_per_stack
        if search_blocks > total_blocks:
            raise ValueError(
                f"`search_blocks` must be <= the {total_blocks} search blocks; "
                f"received {search_blocks}."
            )
        if max_trials is not None:
            check_counts(max_trials=max_trials)
        if spec_ops(space.initial_spec()) > max_ops:
            raise ValueError(
                f"`max_ops` n_op_max={max_ops} is below the initial network's "
                f"{spec_ops(space.initial_spec())} ops."
            )
        if inherit_fraction is not None and not (
            isinstance(inherit_fraction, (int, float))
            and not isinstance(inherit_fraction, bool)
            and 0 < inherit_fraction <= 1
        ):
            raise ValueError(
                "`inherit_fraction` must be a number in (0, 1] (the share of the "
                f"steps a child that inherits trains); received {inherit_fraction!r}."
            )
        values = {ARCHITECTURE: space.to_json(space.initial_spec())}
        if inherit_fraction is not None:
            values[PARENT] = ""
        super().__init__(
            values,
            max_trials=min(max_trials or num_iterations, num_iterations),
            seed=seed,
            **kwargs,
        )
        self._display = GrowthDisplay(oracle=self)
        self.space = space
        self.population_size = population_size
        self.sample_size = sample_size
        self.num_iterations = num_iterations
        self.max_ops = max_ops
        self.initial_growth = initial_growth
        self.search_blocks = search_blocks
        self.search_growth = search_growth
        self.fixed_k = k
        self.inherit_fraction = (
            None if inherit_fraction is None else float(inherit_fraction)
        )
        # Oracle state (get_state / set_state).
        self.k = None if k is None else float(k)
        self.alpha_init = None
        self.eta_init = None
        self.origins = {}  # trial_id -> {"parent": id | None, "sample": [ids]}
        self.stop_reason = None

    # -- history ---------------------------------------------------------
    def _completed(self, trial_ids):
        return [t for t in trial_ids if completed(self, t)]

    def history(self) -> list:
        """Completed trial ids in the order they ended (Algorithm 1's history)."""
        return self._completed(self.end_order)

    def population(self) -> list:
        """The newest n(P) of the history: the active population."""
        return self.history()[-self.population_size :]

    def initial_ids(self) -> list:
        """Trial ids of the random initial population, in creation order."""
        return [
            t for t in self.start_order if self.origins.get(t, {}).get("parent") is None
        ]

    def metrics_of(self, trial_id) -> tuple:
        """`(accuracy, params)` reported by a completed trial."""
        metrics = self.trials[trial_id].metrics
        return (
            float(metrics.get_last_value(ACCURACY)),
            float(metrics.get_last_value(PARAMS)),
        )

    def epsilon_of(self, trial_id) -> float:
        """epsilon of a completed trial (its accuracy until k is fitted)."""
        accuracy, params = self.metrics_of(trial_id)
        if self.k is None or self.alpha_init is None:
            return accuracy
        return epsilon(accuracy, params, self.k, self.alpha_init, self.eta_init)

    def _maybe_fit(self) -> None:
        """Fits k once every initial trial has ended; rescores them."""
        if self.alpha_init is not None:
            return
        initial = self.initial_ids()
        if len(initial) < self.population_size or any(
            t not in self.end_order for t in initial
        ):
            return
        done = self._completed(initial)
        if not done:
            raise RuntimeError("Every trial of the initial population failed.")
        accuracies, params = zip(*(self.metrics_of(t) for t in done), strict=True)
        k, self.alpha_init, self.eta_init = fit_tradeoff(accuracies, params)
        self.k = k if self.fixed_k is None else float(self.fixed_k)
        for trial_id in done:
            self.trials[trial_id].score = self.epsilon_of(trial_id)
            self._save_trial(self.trials[trial_id])

    # -- KerasTuner hooks -----------------------------------------------
    def populate_space(self, trial_id):
        """Returns a random initial model, a grown child, IDLE or STOPPED."""
        if self.stop_reason is not None or len(self.trials) >= self.num_iterations:
            return stopped()
        rng = random.Random(f"{self.seed}-{trial_id}")
        if len(self.initial_ids()) < self.population_size:
            spec = self.space.random_spec(rng, self.initial_growth)
            self.origins[trial_id] = {"parent": None, "sample": []}
            return self._running(spec)
        self._maybe_fit()
        population = self.population()
        if self.alpha_init is None or not population:
            return idle()
        sample = rng.sample(population, min(self.sample_size, len(population)))
        parent = max(sample, key=self.epsilon_of)
        child = self.space.grow(
            self.architecture(parent), rng, self.search_blocks, self.search_growth
        )
        ops = spec_ops(child)
        if ops > self.max_ops:
            self.stop_reason = (
                f"a child of trial {parent} has {ops} ops > n_op_max={self.max_ops}"
            )
            return stopped()
        self.origins[trial_id] = {"parent": parent, "sample": sample}
        return self._running(child, parent)

    def _running(self, spec, parent=None):
        values = {ARCHITECTURE: self.space.to_json(spec)}
        if self.inherit_fraction is not None:
            values[PARENT] = parent or ""
        return running(values)

    def score_trial(self, trial):
        super().score_trial(trial)
        self._maybe_fit()
        trial.score = self.epsilon_of(trial.trial_id)

    def trial_ended(self, trial):
        self._maybe_fit()

    # States written before weight inheritance existed trained from scratch.
    legacy_settings = {"inheritance": None}

    def settings(self) -> dict:
        inheritance = (
            None
            if self.inherit_fraction is None
            else {"fraction": self.inherit_fraction}
        )
        return {"space": self.space.get_config(), "inheritance": inheritance}

    def inheritance_of(self, trial_id) -> str | None:
        """How a completed trial started (its reported `INHERITED` metric).

        Returns:
            None without weight inheritance, else one line: `"from scratch"`,
            `"inherited from trial 3, function-preserving"` or `"inherited
            from trial 3, not function-preserving (...)"`, with the steps
            trained.
        """
        if self.inherit_fraction is None:
            return None
        metrics = self.trials[trial_id].metrics
        if not metrics.exists(INHERITED):
            return None
        trained = (
            f", {metrics.get_last_value(TRAIN_STEPS):.0f} training steps"
            if metrics.exists(TRAIN_STEPS)
            else ""
        )
        if not metrics.get_last_value(INHERITED):
            return "from scratch" + trained
        parent = self.origins.get(trial_id, {}).get("parent")
        preserving = (
            "function-preserving"
            if metrics.get_last_value(PRESERVING)
            else "not function-preserving (see inheritance.json)"
        )
        return f"inherited from trial {parent}, {preserving}{trained}"

    def get_state(self):
        state = super().get_state()
        state.update(
            {
                "k": self.k,
                "alpha_init": self.alpha_init,
                "eta_init": self.eta_init,
                "origins": self.origins,
                "stop_reason": self.stop_reason,
            }
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        self.k = state["k"]
        self.alpha_init = state["alpha_init"]
        self.eta_init = state["eta_init"]
        self.origins = state["origins"]
        self.stop_reason = state["stop_reason"]

    def best_trial_ids(self, num_trials: int = 1) -> list:
        """Completed trials with the highest epsilon, best first."""
        ranked = sorted(self.history(), key=self.epsilon_of, reverse=True)
        return ranked[: max(0, int(num_trials))]
