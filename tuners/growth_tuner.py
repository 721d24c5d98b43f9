"""`GrowthTuner`: trains and evaluates the growth NAS's architectures.

The architecture of a trial is its `"architecture"` hyperparameter value (a
JSON growth spec), so `Tuner.load_model(trial)` rebuilds the trained network
from the trial alone. Each trial trains with the paper's recipe
(`spzoo.training.paper_optimizer`: SGD momentum 0.9, lr 0.01 x0.2 at each
30% of the steps, weight decay 5e-4) and reports `val_accuracy` and
`params`; `GrowthOracle` turns them into epsilon.
"""

import dataclasses
import os

import keras
import keras_tuner

from spzoo import data as spdata
from spzoo import metrics
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
from spzoo.tuners.growth_oracle import GrowthOracle
from spzoo.tuners.growth_space import GrowthSpace, check_input_shape, spec_ops


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

    def run_trial(self, trial, train_data, eval_data, verbose="auto"):
        """Trains one architecture; returns `{"val_accuracy", "params"}`.

        Args:
            trial: The KerasTuner trial.
            train_data: Batched `tf.data.Dataset` of `(x, y)` (repeated here).
            eval_data: Batched evaluation dataset.
            verbose: Keras verbosity of `fit`.
        """
        keras.utils.set_random_seed(self.seed + int(trial.trial_id))
        model = self.hypermodel.build(trial.hyperparameters)
        self.train_classifier(
            model,
            paper_optimizer(self.steps),
            train_data,
            self.steps,
            epochs=self.epochs,
            verbose=verbose,
            jit_compile=False,
        )
        _, accuracy = model.evaluate(eval_data, verbose=0)
        self.save_model(trial.trial_id, model)
        return {ACCURACY: float(accuracy), PARAMS: float(metrics.count_params(model))}


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

    Returns:
        The summary written to `<directory>/growth/search.json` (None on a
        worker, which has no oracle).
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
        project_name="growth",
        overwrite=overwrite,
    )
    preamble = (
        f"Growth NAS on {dataset} ({budget} budget): N_F={settings.filters}, "
        f"N_B={blocks_per_stack}, {settings.steps} steps x batch "
        f"{settings.batch_size} per network, n(P)={population_size}, "
        f"n(S)={sample_size}, n_iter={num_iterations}, "
        f"n_op_max={max_ops}, N_G_init={initial_growth}"
    )
    if not run_search(tuner, dataset, settings, seed, verbose, preamble):
        return None
    best = oracle.best_trial_ids(1)
    summary = {
        "kind": "growth",
        "dataset": dataset,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "settings": dataclasses.asdict(settings),
        "oracle": {
            "population_size": population_size,
            "sample_size": sample_size,
            "num_iterations": num_iterations,
            "max_ops": max_ops,
            "initial_growth": initial_growth,
            "search_blocks": search_blocks,
            "search_growth": search_growth,
            "seed": oracle.seed,
        },
        "space": space.get_config(),
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
            }
            for t in oracle.history()
        ],
        "best_trial": best[0] if best else None,
    }
    project = os.path.join(directory, "growth")
    write_summary(project, summary)
    if best:
        spec = oracle.architecture(best[0])
        spec["name"] = f"growth_{dataset}_trial{best[0]}"
        write_summary(project, spec, "best_architecture.json")
    return summary
