"""`PruningOracle`: the pruning NAS's chain of iterations and stopping rule."""

import json

from keras_tuner.engine.trial import TrialStatus

from spzoo.models import check_spec
from spzoo.tuners.base import (
    ACCURACY,
    SearchOracle,
    check_counts,
    idle,
    running,
    stopped,
)
from spzoo.tuners.pruning_surgery import IMPORTANCE, check_scope

REMOVABLE = "removable"


class PruningOracle(SearchOracle):
    """The pruning NAS's iteration chain and stopping rule.

    Trial 0 trains the starting ResNet; trial `i` prunes trial `i - 1`'s
    network. One trial runs at a time (others get IDLE).

    Args:
        spec: The starting ResNet spec (with `"inner_neurons"`).
        num_iterations: n_iter, pruning iterations (the paper: 1000).
        num_remove: N_R, neurons removed per iteration (the paper: 1).
        max_drop: delta_alpha_max as a fraction (the paper: 0.02).
        max_trials: KerasTuner's trial limit (default n_iter + 1).
        importance: Which neurons go: `"l2"` (the paper's `mean(W**2)`) or
            `"l2_fan_in"` (the same times the layer's fan-in; see
            `importance`). Handed to the tuner with each trial.
        scope: `"inner"` (the blocks' inner neurons) or `"all"` (every PL;
            see the module docstring). Handed to the tuner with each trial.
        **kwargs: Other `keras_tuner.Oracle` arguments.
    """

    search_name = "pruning"
    # States of earlier versions did not record these: they were the only ones.
    legacy_settings = {"importance": "l2", "scope": "inner"}

    def __init__(
        self,
        spec: dict,
        num_iterations: int = 1000,
        num_remove: int = 1,
        max_drop: float = 0.02,
        max_trials: int | None = None,
        importance: str = "l2",
        scope: str = "inner",
        **kwargs,
    ):
        spec = check_spec(spec)
        check_scope(scope)
        if importance not in IMPORTANCE:
            raise ValueError(
                f"`importance` must be one of {IMPORTANCE}; received {importance!r}."
            )
        if not all("inner_neurons" in stack for stack in spec["stacks"]):
            raise ValueError("`spec` must give 'inner_neurons' in every stack.")
        check_counts(num_iterations=num_iterations, num_remove=num_remove)
        if not 0 < max_drop < 1:
            raise ValueError(f"`max_drop` must be in (0, 1); received {max_drop!r}.")
        prunable = sum(
            sum(map(sum, s["inner_neurons"])) - s["blocks"] for s in spec["stacks"]
        )
        if num_remove > prunable:
            raise ValueError(
                f"`num_remove` N_R={num_remove} exceeds the {prunable} removable "
                "inner neurons of `spec` (each layer keeps one)."
            )
        super().__init__(
            {"iteration": 0, "parent": ""},
            max_trials=max_trials or num_iterations + 1,
            **kwargs,
        )
        self.spec = spec
        self.num_iterations = num_iterations
        self.num_remove = num_remove
        self.max_drop = float(max_drop)
        self.importance = importance
        self.scope = scope
        self.chain = []  # completed trial ids, iteration 0, 1, ...
        self.start_accuracy = None
        self.stop_reason = None

    def populate_space(self, trial_id):
        if self.stop_reason is not None:
            return stopped()
        if self.ongoing_trials:
            return idle()
        return running(
            {
                "iteration": len(self.chain),
                "parent": self.chain[-1] if self.chain else "",
                "num_remove": self.num_remove,
                "importance": self.importance,
                "scope": self.scope,
                "spec": json.dumps(self.spec) if not self.chain else "",
            }
        )

    def trial_ended(self, trial):
        if trial.status == TrialStatus.COMPLETED:
            accuracy = float(trial.metrics.get_last_value(ACCURACY))
            if not self.chain:
                self.start_accuracy = accuracy
                self.chain.append(trial.trial_id)
            elif self.start_accuracy - accuracy > self.max_drop:
                self.stop_reason = (
                    f"accuracy {accuracy:.4f} fell more than {self.max_drop:.3f} "
                    f"below the start {self.start_accuracy:.4f} (iteration "
                    f"{len(self.chain)} rejected)"
                )
            else:
                self.chain.append(trial.trial_id)
                if trial.metrics.get_last_value(REMOVABLE) < self.num_remove:
                    self.stop_reason = "fewer than N_R removable neurons left"
            if self.stop_reason is None and len(self.chain) > self.num_iterations:
                self.stop_reason = f"n_iter={self.num_iterations} iterations done"

    def settings(self) -> dict:
        return {
            "spec": self.spec,
            "num_remove": self.num_remove,
            "importance": self.importance,
            "scope": self.scope,
        }

    def get_state(self):
        state = super().get_state()
        state.update(
            {
                "max_drop": self.max_drop,
                "chain": self.chain,
                "start_accuracy": self.start_accuracy,
                "stop_reason": self.stop_reason,
            }
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        self.chain = state["chain"]
        self.start_accuracy = state["start_accuracy"]
        self.stop_reason = state["stop_reason"]
        if (
            self.stop_reason is not None
            and self.stop_reason.startswith("n_iter=")
            and len(self.chain) <= self.num_iterations
        ):
            self.stop_reason = None  # asked for more iterations: continue
