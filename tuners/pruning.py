"""The pruning NAS of Lee & Wang (Algorithm 2, Figs. 8 and 9).

From a fully trained ResNet whose prunable neuron layers (PL) hold equal
thirds of ReLU, max and coincidence neurons, each iteration removes the
N_R neurons with the lowest L2 importance `phi_c = mean(W[..., c]**2)` (the
mean squared weight feeding neuron `c`), then fine-tunes briefly with a
reduced learning rate (one epoch at 2e-3, one at 4e-4). The search stops
after n_iter iterations or when the accuracy falls more than
delta_alpha_max (2 points) below the starting network's.

Which neurons are pruned: the inner neurons of each residual block, those of
the second Op's PL, fed by the first Op's 3x3 convolution. Removing neuron
`c` there removes output channel `c` of that convolution, entry `c` of the
batch norm and the PL, and input channel `c` of the second convolution, so
the pruned network is physically smaller (its spec records the counts in
`"inner_neurons"`, see `spzoo.models.resnet`). The first Op's PL acts on the
block's residual stream, which every block of the stack adds into; its
neurons have no single feeding kernel and are not pruned here.

The paper prunes "neurons with the lowest importance" of every PL, which
`scope="all"` does: the PLs of the first Ops, of the reduction layers and
of the head become candidates too. Their neurons are removed through the
PL's `channel_mask` (the network keeps its shape), and the weights of a
neuron there are the kernel it feeds (`phi_c = mean(W_out[..., c, :]**2)`,
the first Op's convolution or the logits layer) where no single kernel
feeds it (the first Ops' and the head's PLs read the residual stream), and
the reduction's convolution that feeds it otherwise. See docs/fidelity.md,
row "Pruning scope".

Why an oracle *and* a tuner: KerasTuner's oracle decides what runs next and
owns the search's state, but it never sees weights (on a chief it runs in
another process). So `PruningOracle` holds the chain of iterations, the
starting accuracy and the stopping rule, and issues one trial per iteration
whose hyperparameters name the parent trial; `PruningTuner.run_trial` loads
the parent's saved model, removes the neurons, fine-tunes and saves the
smaller model in its trial directory (atomically). Each iteration is a
KerasTuner trial, so a crash loses at most the running iteration, which
KerasTuner retries from the parent's saved model.
"""

import dataclasses
import json
import os
import time

import keras
import keras_tuner
import numpy as np
from keras_tuner.src.engine import base_tuner
from keras_tuner.src.engine import trial as trial_module
from spzoo.tuners.persistence import ResumableOracle, ResumableTuner

from spzoo import metrics
from spzoo.layers.trainable_neuron_layer import NEURON_TYPES
from spzoo.models import build_resnet, check_spec, resnet_spec
from spzoo.training import atomic_write_text, paper_optimizer, save_model_atomic

ACCURACY = "val_accuracy"
MODEL_FILE = "model.keras"
RECORD_FILE = "pruning.json"


def initial_spec(filters_per_type: int, blocks_per_stack: int = 3) -> dict:
    """The pruning NAS's starting ResNet (Fig. 8): PLs with equal thirds.

    Stack `s` has `3 * filters_per_type * 2**s` channels (the paper: N_F =
    16 per neuron type, 48 channels), every PL an equal share of each type.
    """
    spec = resnet_spec(blocks_per_stack, 3 * filters_per_type, neuron="prunable")
    spec["name"] = f"pruning_resnet_{blocks_per_stack}_{3 * filters_per_type}"
    for s, stack in enumerate(spec["stacks"]):
        count = filters_per_type * 2**s
        stack["inner_neurons"] = [[count] * 3 for _ in range(blocks_per_stack)]
    return spec


def inner_layers(spec: dict):
    """Yields `(stack, block, prefix)` of every prunable inner neuron layer."""
    for s, stack in enumerate(spec["stacks"], start=1):
        for b in range(1, stack["blocks"] + 1):
            yield s, b, f"stack{s}_block{b}"


IMPORTANCE = ("l2", "l2_fan_in")
SCOPES = ("inner", "all")


def check_scope(scope) -> str:
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}; received {scope!r}.")
    return scope


def masked_layers(model: keras.Model, spec: dict):
    """Yields `(key, layer, kernel)` of every PL outside the blocks' inner
    neurons, with the kernel whose output channels (last axis) are the
    weights of its neurons (see the module docstring)."""
    for _, _, prefix in inner_layers(spec):
        kernel = model.get_layer(f"{prefix}_op1_conv3x3").kernel
        yield f"{prefix}_op1_neuron", np.moveaxis(np.asarray(kernel), -2, -1)
    for s in range(1, len(spec["stacks"]) + 1):
        name = f"stack{s}_reduction"
        if any(layer.name == f"{name}_neuron" for layer in model.layers):
            yield f"{name}_neuron", np.asarray(model.get_layer(f"{name}_conv").kernel)
    yield "head_neuron", np.asarray(model.get_layer("logits").kernel).T


def importance(
    model: keras.Model, spec: dict, measure: str = "l2", scope: str = "inner"
) -> dict:
    """L2 importance and type of every prunable neuron.

    Args:
        model: A ResNet of the pruning search.
        spec: Its spec.
        measure: `"l2"`, the paper's `mean(W**2)`, or `"l2_fan_in"`, the
            same times the layer's fan-in (see
            `PrunableNeuronLayer.l2_importance`).
        scope: `"inner"`: the blocks' inner neurons (keys: block prefixes);
            `"all"`: also every other PL (keys: layer names, see
            `masked_layers`).

    Returns:
        `{key: (phi, types)}`: `phi` a NumPy array over the layer's
        neurons (0 where masked), `types` their neuron type names.
    """
    check_scope(scope)
    fan_in = measure == "l2_fan_in"
    found = {}
    for _, _, prefix in inner_layers(spec):
        layer = model.get_layer(f"{prefix}_op2_neuron")
        kernel = model.get_layer(f"{prefix}_op1_conv3x3").kernel
        phi = layer.l2_importance(kernel, fan_in_normalized=fan_in)
        found[prefix] = (phi, layer.neuron_types())
    if scope == "all":
        for key, kernel in masked_layers(model, spec):
            layer = model.get_layer(key)
            phi = layer.l2_importance(kernel, fan_in_normalized=fan_in)
            found[key] = (phi, layer.neuron_types())
    return found


def masked_channels(model: keras.Model, spec: dict) -> dict:
    """`{key: channels already removed}` of the PLs pruned by mask."""
    return {
        key: {int(c) for c in np.flatnonzero(np.asarray(layer.channel_mask) == 0)}
        for key, layer in (
            (key, model.get_layer(key)) for key, _ in masked_layers(model, spec)
        )
    }


def select_neurons(scores: dict, num_remove: int, exclude: dict | None = None) -> dict:
    """The `num_remove` lowest-importance neurons, each layer keeping one.

    Args:
        scores: `importance(...)` output.
        num_remove: N_R.
        exclude: `{key: channels}` already removed (`masked_channels`).

    Returns:
        `{key: sorted channel indices to remove}`.
    """
    exclude = exclude or {}
    candidates = sorted(
        (float(phi[c]), prefix, c)
        for prefix, (phi, _) in scores.items()
        for c in range(phi.size)
        if c not in exclude.get(prefix, ())
    )
    left = {
        prefix: phi.size - len(exclude.get(prefix, ()))
        for prefix, (phi, _) in scores.items()
    }
    chosen: dict = {}
    for _, prefix, c in candidates:
        if sum(len(v) for v in chosen.values()) == num_remove:
            break
        if left[prefix] > 1:
            chosen.setdefault(prefix, []).append(c)
            left[prefix] -= 1
    return {prefix: sorted(c) for prefix, c in chosen.items()}


def prune_network(model: keras.Model, spec: dict, input_shape, num_classes, remove):
    """Removes neurons physically: a smaller model with the kept weights.

    Args:
        model: A model built from `spec`.
        spec: Its ResNet spec (with `"inner_neurons"`).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        remove: `{prefix: channel indices}` (see `select_neurons`).

    Returns:
        `(new_model, new_spec)`.
    """
    spec = check_spec(spec)
    keep = {}
    for s, b, prefix in inner_layers(spec):
        layer = model.get_layer(f"{prefix}_op2_neuron")
        types = layer.neuron_types()
        gone = set(remove.get(prefix, []))
        kept = [c for c in range(len(types)) if c not in gone]
        keep[prefix] = np.asarray(kept)
        spec["stacks"][s - 1]["inner_neurons"][b - 1] = [
            sum(1 for c in kept if types[c] == t) for t in NEURON_TYPES
        ]
    new = build_resnet(spec, input_shape, num_classes, name=model.name)
    masked = {k: v for k, v in remove.items() if k not in keep}
    for layer in new.layers:
        if not layer.weights:
            continue
        old = model.get_layer(layer.name).get_weights()
        prefix = layer.name.rsplit("_op", 1)[0]
        values = []
        for source, target in zip(old, layer.get_weights(), strict=True):
            if source.shape != target.shape:
                axis = next(
                    i
                    for i, (a, b) in enumerate(
                        zip(source.shape, target.shape, strict=True)
                    )
                    if a != b
                )
                source = np.take(source, keep[prefix], axis=axis)
            values.append(source)
        layer.set_weights(values)
    for key, channels in masked.items():  # scope "all": by channel mask
        new.get_layer(key).prune(channels)
    return new, spec


def prune_step(
    parent: keras.Model,
    spec: dict,
    input_shape,
    num_classes: int,
    num_remove: int,
    measure: str = "l2",
    scope: str = "inner",
):
    """One pruning iteration before fine-tuning: score, choose, remove.

    Returns:
        `(model, spec, remove, scores)`: the pruned network, its spec, the
        channels removed `{key: channels}` and the parent's `importance`.
    """
    scores = importance(parent, spec, measure, scope)
    exclude = masked_channels(parent, spec) if scope == "all" else None
    remove = select_neurons(scores, num_remove, exclude)
    model, spec = prune_network(parent, spec, input_shape, num_classes, remove)
    return model, spec, remove, scores


def finetune_optimizer(phase_steps: int, rates=(2e-3, 4e-4)):
    """SGD (momentum 0.9, weight decay 5e-4) at `rates[i]` for phase `i`."""
    optimizer = paper_optimizer(len(rates) * phase_steps, rates[0])
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [phase_steps * i for i in range(1, len(rates))], list(rates)
    )
    optimizer.learning_rate = schedule
    return optimizer


class PruningOracle(ResumableOracle, keras_tuner.Oracle):
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
        for arg, value in (
            ("num_iterations", num_iterations),
            ("num_remove", num_remove),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be an int >= 1; received {value!r}.")
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
        hyperparameters = keras_tuner.HyperParameters()
        hyperparameters.Fixed("iteration", 0)
        hyperparameters.Fixed("parent", "")
        super().__init__(
            objective=keras_tuner.Objective(ACCURACY, "max"),
            max_trials=max_trials or num_iterations + 1,
            hyperparameters=hyperparameters,
            allow_new_entries=False,
            tune_new_entries=False,
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
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        if self.ongoing_trials:
            return {"status": trial_module.TrialStatus.IDLE, "values": None}
        return {
            "status": trial_module.TrialStatus.RUNNING,
            "values": {
                "iteration": len(self.chain),
                "parent": self.chain[-1] if self.chain else "",
                "num_remove": self.num_remove,
                "importance": self.importance,
                "scope": self.scope,
                "spec": json.dumps(self.spec) if not self.chain else "",
            },
        }

    def trial_ended(self, trial):
        if trial.status == trial_module.TrialStatus.COMPLETED:
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
                if trial.metrics.get_last_value("removable") < self.num_remove:
                    self.stop_reason = "fewer than N_R removable neurons left"
            if self.stop_reason is None and len(self.chain) > self.num_iterations:
                self.stop_reason = f"n_iter={self.num_iterations} iterations done"

    def get_state(self):
        state = super().get_state()
        state.update(
            {
                "spec": self.spec,
                "num_remove": self.num_remove,
                "max_drop": self.max_drop,
                "importance": self.importance,
                "scope": self.scope,
                "chain": self.chain,
                "start_accuracy": self.start_accuracy,
                "stop_reason": self.stop_reason,
            }
        )
        return state

    def set_state(self, state):
        super().set_state(state)
        if (
            state["spec"] != self.spec
            or state["num_remove"] != self.num_remove
            or state.get("importance", "l2") != self.importance
            or state.get("scope", "inner") != self.scope
        ):
            raise ValueError(
                "The pruning search in this directory started from another network, "
                "N_R, importance or scope; use another --directory or the same "
                "settings."
            )
        self.chain = state["chain"]
        self.start_accuracy = state["start_accuracy"]
        self.stop_reason = state["stop_reason"]
        if (
            self.stop_reason is not None
            and self.stop_reason.startswith("n_iter=")
            and len(self.chain) <= self.num_iterations
        ):
            self.stop_reason = None  # asked for more iterations: continue


class PruningTuner(ResumableTuner, base_tuner.BaseTuner):
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

    def _fit(self, model, optimizer, train_data, steps, verbose):
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=False,
        )
        model.fit(train_data.repeat(), epochs=1, steps_per_epoch=steps, verbose=verbose)

    def pre_create_trial(self):
        """Waits a little before asking again when the oracle answered IDLE."""
        if getattr(self, "_asked", False):
            time.sleep(0.5)
        self._asked = True

    def on_trial_begin(self, trial):
        self._asked = False
        super().on_trial_begin(trial)

    def run_trial(self, trial, train_data, eval_data, verbose="auto"):
        """One iteration: train (iteration 0) or prune + fine-tune."""
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
            self._fit(model, finetune_optimizer(phase), train_data, 2 * phase, verbose)
            record["removed"] = {
                prefix: [scores[prefix][1][c] for c in channels]
                for prefix, channels in remove.items()
            }
        _, accuracy = model.evaluate(eval_data, verbose=0)
        scores = importance(model, spec, scope=scope)
        gone = masked_channels(model, spec) if scope == "all" else {}
        record.update(
            {
                "spec": spec,
                "val_accuracy": float(accuracy),
                "params": metrics.count_params(model),
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
            "params": float(record["params"]),
            "removable": float(removable),
        }

    def load_model(self, trial):
        """The (pruned) model a trial saved."""
        return keras.models.load_model(
            os.path.join(self.get_trial_dir(trial.trial_id), MODEL_FILE)
        )

    def save_model(self, trial_id, model, step=0):
        save_model_atomic(model, os.path.join(self.get_trial_dir(trial_id), MODEL_FILE))


def importance_shares(importance_record: dict) -> dict:
    """Share of the total phi per neuron type, per stack (Fig. 12).

    Args:
        importance_record: `{prefix: {"phi": [...], "types": [...]}}`.

    Returns:
        `{stack: {type: share}}` with stacks numbered from 1 (a reduction's
        and the head's PL count with the stack they follow).
    """
    totals: dict = {}
    stacks = [
        int(prefix.split("_")[0].removeprefix("stack"))
        for prefix in importance_record
        if prefix.startswith("stack")
    ]
    for prefix, entry in importance_record.items():
        # The head's PL (scope "all") follows the last stack.
        stack = (
            int(prefix.split("_")[0].removeprefix("stack"))
            if prefix.startswith("stack")
            else max(stacks)
        )
        sums = totals.setdefault(stack, dict.fromkeys(NEURON_TYPES, 0.0))
        for phi, kind in zip(entry["phi"], entry["types"], strict=True):
            sums[kind] += phi
    return {
        stack: {
            kind: value / (sum(sums.values()) or 1.0) for kind, value in sums.items()
        }
        for stack, sums in sorted(totals.items())
    }


def run_pruning_search(
    dataset: str,
    directory: str,
    budget: str = "small",
    num_iterations: int = 1000,
    num_remove: int = 1,
    max_drop: float = 0.02,
    blocks_per_stack: int = 3,
    max_trials: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    verbose: int = 1,
    importance: str = "l2",
    width_rule: str = "formula",
    scope: str = "inner",
) -> dict | None:
    """Runs (or resumes) the pruning NAS on a dataset.

    The KerasTuner project is `<directory>/pruning/`; each iteration's model
    is `trial_<id>/model.keras`, its spec, importance and removed neurons
    `trial_<id>/pruning.json`; the summary `search.json` and the final
    model `pruned_model.keras`.

    Args:
        dataset: A name from `spzoo.data.list_datasets()`.
        directory: Where the KerasTuner project goes.
        budget: `"paper"`, `"small"` or `"tiny"` (see `spzoo.tuners.budget`).
        num_iterations: n_iter.
        num_remove: N_R.
        max_drop: delta_alpha_max (fraction).
        blocks_per_stack: N_B.
        max_trials: KerasTuner trial limit (default n_iter + 1).
        seed: Seed of the weights.
        overwrite: Start afresh instead of resuming.
        verbose: KerasTuner / Keras verbosity.
        importance: `"l2"` (the paper) or `"l2_fan_in"` (see `importance`).
        width_rule: N_F by the Table I formula or as Table I prints it (see
            `spzoo.tuners.budget.search_settings`).
        scope: `"inner"` or `"all"` (see `PruningOracle`).

    Returns:
        The summary (None on a worker).
    """
    from keras_tuner.src.distribute import utils as dist_utils
    from spzoo.tuners.budget import search_settings

    from spzoo import data as spdata

    info = spdata.get(dataset)
    settings = search_settings(info, budget, width_rule)
    spec = initial_spec(settings.filters, blocks_per_stack)
    oracle = PruningOracle(
        spec,
        num_iterations=num_iterations,
        num_remove=num_remove,
        max_drop=max_drop,
        max_trials=max_trials,
        importance=importance,
        scope=scope,
        seed=seed + 1,
    )
    tuner = PruningTuner(
        oracle,
        info.input_shape,
        info.num_classes,
        base_steps=settings.base_steps,
        finetune_steps=settings.finetune_steps,
        seed=seed,
        directory=directory,
        project_name="pruning",
        overwrite=overwrite,
    )
    if verbose:
        print(
            f"Pruning NAS on {dataset} ({budget} budget): ResNet N_B="
            f"{blocks_per_stack}, {settings.filters} neurons of each type in the "
            f"first stack, {settings.base_steps} training steps, fine-tune "
            f"{settings.finetune_steps or 'one epoch'} steps at 2e-3 then 4e-4, "
            f"N_R={num_remove}, n_iter={num_iterations}, "
            f"delta_alpha_max={max_drop}"
        )
    train = spdata.load(dataset, "train", batch_size=settings.batch_size, seed=seed)
    evaluation = spdata.load(dataset, "eval", batch_size=settings.batch_size)
    tuner.search(train, evaluation, verbose=verbose)
    if dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle():
        return None
    project = os.path.join(directory, "pruning")
    iterations = []
    for trial_id in oracle.chain:
        with open(os.path.join(project, f"trial_{trial_id}", RECORD_FILE)) as f:
            record = json.load(f)
        record["trial_id"] = trial_id
        record["importance_shares"] = importance_shares(record.pop("importance"))
        iterations.append(record)
    final = oracle.chain[-1]
    model_path = os.path.join(project, "pruned_model.keras")
    save_model_atomic(tuner.load_model(oracle.trials[final]), model_path)
    summary = {
        "kind": "pruning",
        "dataset": dataset,
        "settings": dataclasses.asdict(settings),
        "num_iterations": num_iterations,
        "num_remove": num_remove,
        "max_drop": max_drop,
        "importance": importance,
        "scope": scope,
        "stop_reason": oracle.stop_reason,
        "start_accuracy": oracle.start_accuracy,
        "iterations": [
            {k: v for k, v in record.items() if k != "spec"} for record in iterations
        ],
        "final_spec": iterations[-1]["spec"],
        "model_path": model_path,
    }
    atomic_write_text(
        os.path.join(project, "search.json"), json.dumps(summary, indent=2) + "\n"
    )
    return summary
