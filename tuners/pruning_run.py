"""`run_pruning_search`: `spzoo search pruning` on a dataset."""

import dataclasses
import json
import os

from spzoo import data as spdata
from spzoo.training import save_model_atomic
from spzoo.tuners.base import run_search, write_summary
from spzoo.tuners.budget import search_settings
from spzoo.tuners.pruning_oracle import PruningOracle
from spzoo.tuners.pruning_surgery import initial_spec
from spzoo.tuners.pruning_tuner import RECORD_FILE, PruningTuner
from spzoo.tuners.statistics import importance_shares


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
    tensorboard: bool = True,
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
        tensorboard: Log every iteration for TensorBoard in
            `<directory>/pruning/tensorboard/` (`run_search`).

    Returns:
        The summary (None on a worker).
    """
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
    preamble = (
        f"Pruning NAS on {dataset} ({budget} budget): ResNet N_B="
        f"{blocks_per_stack}, {settings.filters} neurons of each type in the "
        f"first stack, {settings.base_steps} training steps, fine-tune "
        f"{settings.finetune_steps or 'one epoch'} steps at 2e-3 then 4e-4, "
        f"N_R={num_remove}, n_iter={num_iterations}, "
        f"delta_alpha_max={max_drop}"
    )
    if not run_search(tuner, dataset, settings, seed, verbose, preamble, tensorboard):
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
    write_summary(project, summary)
    return summary
