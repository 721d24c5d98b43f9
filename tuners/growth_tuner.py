"""`GrowthTuner`: trains and evaluates the growth NAS's architectures.

The architecture of a trial is its `"architecture"` hyperparameter value (a
JSON growth spec), so `Tuner.load_model(trial)` rebuilds the trained network
from the trial alone. Each trial trains with the paper's recipe
(`spzoo.training.paper_optimizer`: SGD momentum 0.9, lr 0.01 x0.2 at each
30% of the steps, weight decay 5e-4) and reports `val_accuracy` and
`params`; `GrowthOracle` turns them into epsilon.

With weight inheritance (`GrowthOracle(inherit_fraction=...)`, `spzoo
search growth --inherit-weights`) a child starts from its parent's saved
weights (`spzoo.tuners.growth_inherit`: function-preserving where the
growth step allows it) and trains that fraction of the steps, with the
same recipe compressed to them. The parent's weights are the file
`save_model` wrote atomically in the parent's trial directory (a worker
of a chief/worker search reads it there: it is complete or absent, never
half-written); its spec comes from the oracle (`get_trial`). Each trial
writes how it started to `trial_<id>/inheritance.json` and reports it as
the metrics `inherited`, `function_preserving` and `train_steps`.
"""

import dataclasses
import os

import keras
import keras_tuner

from spzoo import data as spdata
from spzoo import metrics
from spzoo.io import atomic_write_json, read_json
from spzoo.models import growth
from spzoo.training import paper_optimizer
from spzoo.tuners.base import (
    ACCURACY,
    ARCHITECTURE,
    PARAMS,
    SearchTuner,
    run_search,
    write_summary,
)
from spzoo.tuners.budget import search_settings
from spzoo.tuners.growth_inherit import (
    EXACT,
    SCRATCH,
    inherit_weights,
    inherited_schedule,
)
from spzoo.tuners.growth_oracle import (
    INHERITED,
    PARENT,
    PRESERVING,
    TRAIN_STEPS,
    GrowthOracle,
)
from spzoo.tuners.growth_space import GrowthSpace, check_input_shape, spec_ops

INHERITANCE_FILE = "inheritance.json"


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
        return growth.build(spec, self.input_shape, self.num_classes)


class GrowthTuner(SearchTuner, keras_tuner.Tuner):
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
        # Read before a worker's oracle becomes a client of the chief's.
        self.inherit_fraction = getattr(oracle, "inherit_fraction", None)

    def inherit(self, trial, model) -> dict:
        """Starts a trial's model from its parent's weights, if it has a parent.

        Returns:
            The record written to `inheritance.json`: `"mode"` (`"exact"`,
            `"partial"` or `"scratch"`), `"parent"`, and the growth steps
            (`spzoo.tuners.growth_inherit.apply_inheritance`) or why the
            model starts from scratch.
        """
        parent = trial.hyperparameters.values.get(PARENT, "")
        if not parent:
            return {"mode": SCRATCH, "parent": None, "reason": "random initial model"}
        path = self._get_checkpoint_fname(parent)
        if not os.path.isfile(path):
            return {
                "mode": SCRATCH,
                "parent": parent,
                "reason": f"the parent's weights file {path} does not exist",
            }
        parent_spec = self.oracle.get_trial(parent).hyperparameters.values
        record = inherit_weights(
            parent_spec[ARCHITECTURE],
            path,
            trial.hyperparameters.values[ARCHITECTURE],
            model,
        )
        return {"parent": parent, **record}

    def run_trial(self, trial, train_data, eval_data, verbose="auto", callbacks=None):
        """Trains one architecture; returns `{"val_accuracy", "params"}`.

        Args:
            trial: The KerasTuner trial.
            train_data: Batched `tf.data.Dataset` of `(x, y)` (repeated here).
            eval_data: Batched evaluation dataset.
            verbose: Keras verbosity of `fit`.
            callbacks: The search's callbacks (`SearchTuner.trial_callbacks`).
        """
        callbacks = self.trial_callbacks(trial, callbacks)
        self.free_earlier_trials()
        keras.utils.set_random_seed(self.seed + int(trial.trial_id))
        model = self.hypermodel.build(trial.hyperparameters)
        steps, epochs, record = self.steps, self.epochs, None
        if self.inherit_fraction is not None:
            record = self.inherit(trial, model)
            if record["mode"] != SCRATCH:
                steps, epochs = inherited_schedule(
                    self.steps, self.epochs, self.inherit_fraction
                )
            record.update({"train_steps": steps, "train_epochs": epochs})
            atomic_write_json(
                os.path.join(self.get_trial_dir(trial.trial_id), INHERITANCE_FILE),
                record,
                indent=2,
            )
        self.train_classifier(
            model,
            paper_optimizer(steps),
            train_data,
            steps,
            epochs=epochs,
            verbose=verbose,
            jit_compile=False,
            callbacks=callbacks,
        )
        _, accuracy = model.evaluate(eval_data, verbose=0, callbacks=callbacks)
        self.save_model(trial.trial_id, model)
        results = {
            ACCURACY: float(accuracy),
            PARAMS: float(metrics.count_params(model)),
        }
        if record is not None:
            results[INHERITED] = float(record["mode"] != SCRATCH)
            results[PRESERVING] = float(record["mode"] == EXACT)
            results[TRAIN_STEPS] = float(steps)
        return results


def make_growth_search(
    dataset: str,
    directory: str,
    budget: str = "small",
    max_trials: int | None = None,
    population_size: int = 100,
    sample_size: int = 25,
    num_iterations: int = 500,
    max_ops: int = 100,
    initial_growth: int = 10,
    search_blocks: int = 1,
    search_growth: int = 1,
    blocks_per_stack: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    width_rule: str = "formula",
    inherit_fraction: float | None = None,
    project_name: str = "growth",
) -> tuple:
    """Builds (or reloads) a growth NAS's tuner; see `run_growth_search`.

    Returns:
        `(tuner, settings, preamble)`: the `GrowthTuner` (its oracle in
        `tuner.oracle`), the `SearchSettings` and the one-line description.
    """
    info = spdata.get(dataset)
    check_input_shape(info.input_shape)
    settings = search_settings(info, budget, width_rule)
    space = GrowthSpace(filters=settings.filters, blocks_per_stack=blocks_per_stack)
    oracle = GrowthOracle(
        space,
        population_size=population_size,
        sample_size=sample_size,
        num_iterations=num_iterations,
        max_ops=max_ops,
        initial_growth=initial_growth,
        search_blocks=search_blocks,
        search_growth=search_growth,
        inherit_fraction=inherit_fraction,
        max_trials=max_trials,
        seed=seed + 1,
    )
    tuner = GrowthTuner(
        oracle,
        info.input_shape,
        info.num_classes,
        steps=settings.steps,
        epochs=settings.epochs,
        seed=seed,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )
    preamble = (
        f"Growth NAS on {dataset} ({budget} budget): N_F={settings.filters}, "
        f"N_B={blocks_per_stack}, {settings.steps} steps x batch "
        f"{settings.batch_size} per network, n(P)={population_size}, "
        f"n(S)={sample_size}, n_iter={num_iterations}, "
        f"n_op_max={max_ops}, N_G_init={initial_growth}"
    )
    if inherit_fraction is not None:
        child_steps, _ = inherited_schedule(
            settings.steps, settings.epochs, inherit_fraction
        )
        preamble += (
            f"; weight inheritance: a child starts from its parent's weights and "
            f"trains {child_steps} steps"
        )
    return tuner, settings, preamble


def inheritance_record(project: str, trial_id: str) -> dict | None:
    """A trial's `inheritance.json` (None if it has none)."""
    path = os.path.join(project, f"trial_{trial_id}", INHERITANCE_FILE)
    return read_json(path, "inheritance record") if os.path.isfile(path) else None


def run_growth_search(
    dataset: str,
    directory: str,
    budget: str = "small",
    max_trials: int | None = None,
    population_size: int = 100,
    sample_size: int = 25,
    num_iterations: int = 500,
    max_ops: int = 100,
    initial_growth: int = 10,
    search_blocks: int = 1,
    search_growth: int = 1,
    blocks_per_stack: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    verbose: int = 1,
    width_rule: str = "formula",
    inherit_fraction: float | None = None,
    tensorboard: bool = True,
) -> dict | None:
    """Runs (or resumes) a growth NAS on a dataset with KerasTuner.

    Trials, their weights and the oracle live in `<directory>/growth/`; run
    the same call again after an interruption and it continues. With
    KerasTuner's chief/worker environment variables set, the chief serves
    the oracle and the workers train.

    Args:
        dataset: A name from `spzoo.data.list_datasets()`.
        directory: Where the KerasTuner project goes.
        budget: `"paper"`, `"small"` or `"tiny"` (see `spzoo.tuners.budget`).
        max_trials: Trial limit (default n_iter).
        population_size, sample_size, num_iterations, max_ops,
        initial_growth, search_blocks, search_growth: `GrowthOracle`
            settings (n(P), n(S), n_iter, n_op_max, N_G_init, N_B_search,
            N_G_search).
        blocks_per_stack: N_B.
        seed: Seed of the oracle and of the weights.
        overwrite: Start afresh instead of resuming.
        verbose: KerasTuner / Keras verbosity.
        width_rule: N_F by the Table I formula (`"formula"`) or as Table I
            prints it (`"table1"`; see `spzoo.tuners.budget.search_settings`).
        inherit_fraction: Weight inheritance (None: off): a child starts
            from its parent's weights and trains this share of the steps.
        tensorboard: Log every trial for TensorBoard in
            `<directory>/growth/tensorboard/` (`run_search`).

    Returns:
        The summary written to `<directory>/growth/search.json` (None on a
        worker, which has no oracle).
    """
    tuner, settings, preamble = make_growth_search(
        dataset,
        directory,
        budget=budget,
        max_trials=max_trials,
        population_size=population_size,
        sample_size=sample_size,
        num_iterations=num_iterations,
        max_ops=max_ops,
        initial_growth=initial_growth,
        search_blocks=search_blocks,
        search_growth=search_growth,
        blocks_per_stack=blocks_per_stack,
        seed=seed,
        overwrite=overwrite,
        width_rule=width_rule,
        inherit_fraction=inherit_fraction,
    )
    if not run_search(tuner, dataset, settings, seed, verbose, preamble, tensorboard):
        return None
    return write_growth_summary(tuner, dataset, settings)


def write_growth_summary(tuner, dataset: str, settings) -> dict:
    """Writes a growth search's `search.json` and best spec; returns the summary."""
    oracle = tuner.oracle
    info = spdata.get(dataset)
    project = tuner.project_dir
    best = oracle.best_trial_ids(1)
    summary = {
        "kind": "growth",
        "dataset": dataset,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "settings": dataclasses.asdict(settings),
        "oracle": {
            "population_size": oracle.population_size,
            "sample_size": oracle.sample_size,
            "num_iterations": oracle.num_iterations,
            "max_ops": oracle.max_ops,
            "initial_growth": oracle.initial_growth,
            "search_blocks": oracle.search_blocks,
            "search_growth": oracle.search_growth,
            "inherit_fraction": oracle.inherit_fraction,
            "seed": oracle.seed,
        },
        "space": oracle.space.get_config(),
        "k": oracle.k,
        "alpha_init": oracle.alpha_init,
        "eta_init": oracle.eta_init,
        "stop_reason": oracle.stop_reason,
        "history": [
            {
                "trial_id": t,
                "parent": oracle.origins.get(t, {}).get("parent"),
                ACCURACY: oracle.metrics_of(t)[0],
                PARAMS: oracle.metrics_of(t)[1],
                "epsilon": oracle.epsilon_of(t),
                "ops": spec_ops(oracle.architecture(t)),
                "inheritance": inheritance_record(project, t),
            }
            for t in oracle.history()
        ],
        "best_trial": best[0] if best else None,
    }
    write_summary(project, summary)
    if best:
        spec = oracle.architecture(best[0])
        spec["name"] = f"growth_{dataset}_trial{best[0]}"
        write_summary(project, spec, "best_architecture.json")
    return summary
