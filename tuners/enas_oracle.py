"""`EnasOracle`: ENAS macro search (Pham et al. 2018) as a KerasTuner oracle.

The NHN paper's first step (Section 2.1) is ENAS's macro search. ENAS
alternates two phases for a number of epochs, then derives the result:

1. train the shared weights w of the supernet (one step per training
   minibatch, each with an architecture sampled from the controller);
2. train the controller for a number of steps, each on the rewards (the
   validation-minibatch accuracies with w) of sampled architectures;
3. derive: sample candidates from the trained controller, evaluate each
   with w, keep the best.

Here each of those is a KerasTuner trial, handed out in that order. A
trial's hyperparameter `"enas"` is JSON `{"phase", "epoch", "step",
"samples", "weights", "first_batch"}`: the architectures the controller
sampled for it, the trial whose shared weights it starts from (`None`:
the initial ones) and the index of its first minibatch; `"architecture"` is
the spec of its last sample. The tuner (`spzoo.tuners.enas_tuner.EnasTuner`)
trains or evaluates, a controller trial reports one `reward_<i>` per sample
(and their mean as `val_accuracy`); when it ends, the oracle makes the
REINFORCE step (`EnasController.update`). A derive trial reports its
candidate's `val_accuracy`, and only derive trials count as KerasTuner's
best trials.

The controller lives in the oracle: its weights, Adam's variables, the
baseline and its sampler's state are in the oracle's state with the phase
position (`get_state`/`set_state`), written atomically with KerasTuner's
`oracle.json` after every trial, so a search killed at any point (SIGKILL
included) resumes where it was and draws the same architectures. ENAS is
sequential: while a trial runs, other tuners (workers of a chief/worker
search) are answered IDLE; the controller stays on the chief.
"""

import json
import random

from keras_tuner.engine.trial import TrialStatus

from spzoo.nhn.macro_space import MacroSpace
from spzoo.tuners.base import (
    ARCHITECTURE,
    SearchOracle,
    check_counts,
    idle,
    running,
    stopped,
)
from spzoo.tuners.enas_controller import EnasController

TASK = "enas"
PHASES = ("shared", "controller", "derive")


def reward_name(index: int) -> str:
    """The metric of a controller trial's `index`-th sample's reward."""
    return f"reward_{index}"


class EnasOracle(SearchOracle):
    """ENAS macro search over a `MacroSpace` (see the module docstring).

    Args:
        space: The `MacroSpace`.
        epochs: ENAS epochs (each: a shared-weights phase, a controller phase).
        shared_steps: Training minibatches of each shared-weights phase
            (ENAS: one pass over the training set).
        controller_steps: Controller updates per epoch (ENAS: 50).
        controller_aggregate: Samples per controller update (ENAS: 20).
        derive_samples: Candidates sampled at the end (ENAS prints 10).
        seed: Seed of the controller's weights and sampler.
        **controller: `EnasController` settings (`units`, `learning_rate`,
            `tanh_constant`, `entropy_weight`, `baseline_decay`,
            `skip_weight`); ENAS's CIFAR-10 macro values by default.
    """

    search_name = "ENAS macro"

    def __init__(
        self,
        space: MacroSpace,
        epochs: int = 4,
        shared_steps: int = 100,
        controller_steps: int = 10,
        controller_aggregate: int = 5,
        derive_samples: int = 10,
        seed: int = 0,
        **controller,
    ):
        if not isinstance(space, MacroSpace):
            raise ValueError(f"`space` must be a MacroSpace; received {space!r}.")
        check_counts(
            epochs=epochs,
            shared_steps=shared_steps,
            controller_steps=controller_steps,
            controller_aggregate=controller_aggregate,
            derive_samples=derive_samples,
        )
        if not isinstance(seed, int):
            raise ValueError(f"`seed` must be an int; received {seed!r}.")
        self.space = space
        self.epochs = epochs
        self.shared_steps = shared_steps
        self.controller_steps = controller_steps
        self.controller_aggregate = controller_aggregate
        self.derive_samples = derive_samples
        self.enas_seed = seed
        self.controller = EnasController(space, seed=seed, **controller)
        self.total = epochs * (1 + controller_steps) + derive_samples
        self.position = 0  # trials handed out, in the order of `task`
        self.last_shared = None  # the completed shared-weights trial
        self.log = []  # one entry per controller update
        default = json.dumps(space.random_spec(random.Random(0)))
        super().__init__(
            {ARCHITECTURE: default, TASK: json.dumps({})}, self.total, seed=seed + 1
        )

    def settings(self) -> dict:
        return {
            "space": self.space.get_config(),
            "epochs": self.epochs,
            "shared_steps": self.shared_steps,
            "controller_steps": self.controller_steps,
            "controller_aggregate": self.controller_aggregate,
            "derive_samples": self.derive_samples,
            "seed": self.enas_seed,
            "controller": self.controller.config(),
        }

    def task(self, position: int) -> tuple:
        """`(phase, epoch, step)` of the `position`-th trial."""
        per_epoch = 1 + self.controller_steps
        if position < self.epochs * per_epoch:
            epoch, r = divmod(position, per_epoch)
            return ("shared", epoch, 0) if r == 0 else ("controller", epoch, r - 1)
        return ("derive", self.epochs, position - self.epochs * per_epoch)

    @staticmethod
    def trial_task(trial) -> dict:
        """The `"enas"` value of a trial, parsed."""
        return json.loads(trial.hyperparameters.values.get(TASK) or "{}")

    def populate_space(self, trial_id):
        if self.ongoing_trials:  # ENAS is sequential: wait for the running trial
            return idle()
        if self.position >= self.total:
            return stopped()
        phase, epoch, step = self.task(self.position)
        count = {
            "shared": self.shared_steps,
            "controller": self.controller_aggregate,
            "derive": 1,
        }[phase]
        samples = [self.controller.sample() for _ in range(count)]
        first_batch = {
            "shared": epoch * self.shared_steps,
            "controller": (epoch * self.controller_steps + step) * count,
            "derive": 0,  # every candidate on the same validation batches
        }[phase]
        task = {
            "phase": phase,
            "epoch": epoch,
            "step": step,
            "samples": samples,
            "weights": self.last_shared,
            "first_batch": first_batch,
        }
        spec = self.controller.spec(samples[-1], name=f"nhn_enas_{trial_id}")
        self.position += 1
        return running({ARCHITECTURE: json.dumps(spec), TASK: json.dumps(task)})

    def trial_ended(self, trial):
        if trial.status != TrialStatus.COMPLETED:
            return  # failed: its samples teach the controller nothing
        task = self.trial_task(trial)
        if task["phase"] == "shared":
            self.last_shared = trial.trial_id
        elif task["phase"] == "controller":
            metrics = trial.metrics
            rewards = [
                metrics.get_last_value(reward_name(i))
                for i in range(len(task["samples"]))
            ]
            stats = self.controller.update(task["samples"], rewards)
            self.log.append({"epoch": task["epoch"], "step": task["step"], **stats})

    def get_best_trials(self, num_trials=1):
        """The best derived candidates (the other trials are not candidates)."""
        ranked = super().get_best_trials(len(self.trials))
        return [
            t
            for t in ranked
            if t.status == TrialStatus.COMPLETED
            and self.trial_task(t).get("phase") == "derive"
        ][:num_trials]

    def get_state(self):
        return {
            **super().get_state(),
            "controller": self.controller.get_state(),
            "position": self.position,
            "last_shared": self.last_shared,
            "log": self.log,
        }

    def set_state(self, state):
        super().set_state(state)
        self.controller.set_state(state["controller"])
        self.position = state["position"]
        self.last_shared = state["last_shared"]
        self.log = state["log"]
