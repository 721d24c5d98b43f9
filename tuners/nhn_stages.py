"""The five stages of the NHN pipeline, one function each (see `nhn_pipeline`).

Each stage runs unless its folder under `<directory>/nhn/` holds its
`stage.json` (then its result and `spec.json` are read back).
"""

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from spzoo import data as spdata
from spzoo.io import atomic_write_json
from spzoo.nhn import dnp
from spzoo.nhn.addon_supernet import SharedAddOns
from spzoo.nhn.addons import addon_specs, gene_addons
from spzoo.nhn.macro_space import MacroSpace
from spzoo.nhn.recipe import BATCH_SIZE, evaluate, steps_for, train_spec
from spzoo.training import save_model_atomic
from spzoo.tuners.base import (
    is_chief,
    oracle_address,
    search_train_data,
    tensorboard_callbacks,
)
from spzoo.tuners.enas_tuner import run_enas_search
from spzoo.tuners.lds_oracle import LocationDirectionOracle
from spzoo.tuners.lds_tuner import LDSTuner
from spzoo.tuners.macro_search import MacroSearchOracle, MacroTuner

SEGMENTS = 3


def load_arrays(dataset: str, split: str) -> tuple:
    """`(x, y)` NumPy arrays of a whole split (LDS slices them per member)."""
    xs, ys = [], []
    for x, y in spdata.load(dataset, split, batch_size=512, shuffle=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@dataclasses.dataclass(frozen=True)
class Run:
    """What every stage reads: the dataset, the budget, where and how."""

    dataset: str
    info: object
    budget: object  # spzoo.tuners.nhn_pipeline.NHNBudget
    root: Path
    seed: int
    verbose: int
    tensorboard: bool = True  # the macro search's trained candidates log

    def say(self, message: str) -> None:
        """Prints a progress line when verbose."""
        if self.verbose:
            print(message)


def write_json(path: Path, value) -> None:
    atomic_write_json(path, value, indent=1)


def _read_json(path: Path):
    return json.loads(path.read_text())


def _run_stage(
    stage: Path,
    work: Callable[[], tuple],
    keep: Callable[[dict], bool] = lambda result: True,
) -> tuple[dict, dict]:
    """Runs a stage unless it finished before (and `keep` keeps its result).

    Args:
        stage: The stage's folder.
        work: Does the stage; returns `(model or None, spec, result)`.
        keep: Whether a finished stage's result still holds.

    Returns:
        `(result, spec)`: `stage.json` (with the stage's `seconds`) and
        `spec.json`.
    """
    path = stage / "stage.json"
    result = _read_json(path) if path.is_file() else None
    if result is None or not keep(result):
        start = time.time()
        model, spec, result = work()
        result = {**result, "seconds": time.time() - start}
        write_json(stage / "spec.json", spec)
        if model is not None:
            save_model_atomic(model, stage / "model.keras")
        write_json(path, result)
    return result, _read_json(stage / "spec.json")


def macro_stage(run: Run, macro: str) -> tuple[dict, dict]:
    """1. Layer-hierarchy search: ENAS (`macro="enas"`), or the best of random
    macro candidates, each trained (`"random"`) or ranked on a supernet."""
    macro_supernet = macro == "supernet"

    def work():
        if macro == "enas":
            return _enas_macro(run)
        b, info = run.budget, run.info
        space = MacroSpace(b.num_layers, SEGMENTS, b.filters)
        oracle = MacroSearchOracle(space, max_trials=b.macro_trials, seed=run.seed)
        epochs = b.macro_epochs * (b.macro_trials if macro_supernet else 1)
        tuner = MacroTuner(
            oracle,
            info.input_shape,
            info.num_classes,
            steps=steps_for(info.sizes["train"], BATCH_SIZE, epochs),
            seed=run.seed,
            supernet=macro_supernet,
            directory=str(run.root),
            project_name="macro_search",
        )
        run.say(f"[1/5] layer-hierarchy search: {b.macro_trials} random candidates")
        tuner.search(
            search_train_data(run.dataset, BATCH_SIZE, run.seed),
            spdata.load(run.dataset, "eval", 256, shuffle=False),
            verbose=0,
            callbacks=tensorboard_callbacks(tuner, run.tensorboard),
        )
        best = oracle.get_best_trials(1)[0]
        spec = dict(oracle.architecture(best.trial_id), name="nhn_base")
        result = {
            "best_trial": best.trial_id,
            "search_accuracy": best.score,
            "trials": len(oracle.trials),
            "macro": macro,
        }
        return None, spec, result

    def keep(result):
        if result.get("macro", macro) != macro:
            raise ValueError(
                f"The macro stage in {run.root / 'macro'} ran with --macro "
                f"{result['macro']}, not {macro}; use the same, or another directory."
            )
        return True

    return _run_stage(run.root / "macro", work, keep)


def _enas_macro(run: Run) -> tuple:
    """ENAS: `macro_trials` epochs of `macro_epochs` on the shared weights."""
    b, info = run.budget, run.info
    run.say(f"[1/5] layer-hierarchy search: ENAS, {b.macro_trials} epochs")
    found = run_enas_search(
        MacroSpace(b.num_layers, SEGMENTS, b.filters),
        (*load_arrays(run.dataset, "train"), *load_arrays(run.dataset, "eval")),
        str(run.root),
        epochs=b.macro_trials,
        shared_steps=steps_for(info.sizes["train"], BATCH_SIZE, b.macro_epochs),
        controller_steps=b.enas_controller_steps,
        controller_aggregate=b.enas_aggregate,
        derive_samples=b.enas_derive,
        batch_size=BATCH_SIZE,
        seed=run.seed,
        progress=bool(run.verbose),
    )
    spec = dict(found["spec"], name="nhn_base")
    found.pop("spec")
    return None, spec, {**found, "macro": "enas"}


def base_stage(run: Run, base_spec: dict) -> dict:
    """2. Trains the base model from scratch."""

    def work():
        run.say(f"[2/5] training the base model ({run.budget.train_epochs} epochs)")
        model, metrics = train_spec(
            base_spec,
            run.dataset,
            run.budget.train_epochs,
            run.seed,
            verbose=run.verbose,
        )
        return model, base_spec, metrics

    return _run_stage(run.root / "base", work)[0]


def pruning_stage(run: Run, base_spec: dict) -> tuple[dict, dict]:
    """3. DNP of the trained base model, then the pruned model from scratch."""
    stage = run.root / "pruned"

    def work():
        b, info = run.budget, run.info
        run.say(f"[3/5] DNP: removing {b.prune_fraction:.0%} of 3x3/5x5 kernels")
        trained = keras.saving.load_model(run.root / "base" / "model.keras")
        threshold = (
            dnp.threshold_for_fraction(trained, base_spec, b.prune_fraction)
            if dnp.kernel_std(trained, base_spec)
            else 0.0  # no 3x3/5x5 conv layer: nothing to prune
        )
        small, pruned_model, masked, found = dnp.prune(
            trained, base_spec, threshold, info.input_shape, info.num_classes
        )
        before = evaluate(pruned_model, run.dataset)
        write_json(stage / "masked_spec.json", masked)
        model, metrics = train_spec(
            small, run.dataset, b.train_epochs, run.seed + 1, verbose=run.verbose
        )
        alive = found["alive"]
        result = {
            **metrics,
            "threshold": threshold,
            "removed_kernels": found["removed_kernels"],
            "kernels": found["kernels"],
            "neurons": {str(i): int(a.sum()) for i, a in alive.items()},
            "neurons_before": {str(i): len(a) for i, a in alive.items()},
            "accuracy_after_pruning_before_retraining": before["accuracy"],
        }
        return model, small, result

    return _run_stage(stage, work)


def _lds_search(run: Run, pruned_spec: dict, direction_rule: str) -> tuple:
    """`(oracle, tuner)` of the LDS stage, the same on the chief and workers."""
    b, info = run.budget, run.info
    base_model = keras.saving.load_model(run.root / "pruned" / "model.keras")
    cycles = b.location_cycles + b.direction_cycles
    shared = SharedAddOns(
        pruned_spec,
        base_model,
        info.input_shape,
        info.num_classes,
        total_steps=b.population * cycles * b.lds_steps,
    )
    oracle = LocationDirectionOracle(
        pruned_spec,
        population_size=b.population,
        location_cycles=b.location_cycles,
        direction_cycles=b.direction_cycles,
        sparsity=b.sparsity,
        seed=run.seed,
        direction_rule=direction_rule,
    )
    x_train, y_train = load_arrays(run.dataset, "train")
    x_eval, y_eval = load_arrays(run.dataset, "eval")
    tuner = LDSTuner(
        oracle,
        shared,
        (x_train, y_train, x_eval, y_eval),
        steps=b.lds_steps,
        batch_size=BATCH_SIZE,
        eval_batch_size=min(500, len(x_eval)),
        progress=bool(run.verbose),
        directory=str(run.root),
        project_name="lds_search",
    )
    return oracle, tuner


def lds_stage(run: Run, pruned_spec: dict, direction_rule: str) -> tuple[dict, dict]:
    """4. LDS on the pruned model with shared add-on weights.

    On the chief of a chief/worker search, the chief serves the search and
    its workers (`join_lds_stage`) train the members.
    """
    stage = run.root / "lds"

    def keep(result):
        if result.get("direction_rule", "sampled") != direction_rule:
            raise ValueError(
                f"The LDS stage in {stage} ran with direction_rule="
                f"{result.get('direction_rule', 'sampled')!r}, not "
                f"{direction_rule!r}; use the same rule, or another directory."
            )
        return True

    def work():
        b = run.budget
        run.say(
            f"[4/5] LDS: K={b.population}, {b.location_cycles} location + "
            f"{b.direction_cycles} direction cycles, M={b.lds_steps}"
        )
        oracle, tuner = _lds_search(run, pruned_spec, direction_rule)
        if is_chief():
            run.say(f"serving the LDS search to its workers at {oracle_address()}")
        tuner.search(verbose=0)
        gene = oracle.best_location
        directions = tuner.load_direction(oracle.best_direction["trial"])
        addons = addon_specs(gene_addons(gene, pruned_spec), directions)
        spec = dict(pruned_spec, name="nhn", dropout=b.dropout, addons=addons)
        result = {
            "location_gene": gene,
            "addons": len(addons),
            "direction_accuracy": oracle.best_direction["accuracy"],
            "cycles": oracle.log,
            "candidates": len(oracle.trials),
            "direction_rule": direction_rule,
            "shared_weights_version": oracle.weights_version,
        }
        return None, spec, result

    return _run_stage(stage, work, keep)


def join_lds_stage(run: Run, direction_rule: str, poll: float = 0.5) -> None:
    """A worker's part of the pipeline: trains LDS members for the chief.

    The chief runs stages 1-3; the worker waits for its pruned model, then
    joins the LDS search until the chief's oracle stops it. Nothing to do
    when the chief's LDS stage has finished.

    Args:
        run: The run (the chief's directory, shared).
        direction_rule: As the chief's.
        poll: Seconds between two looks for the chief's pruned model.
    """
    pruned, done = run.root / "pruned", run.root / "lds" / "stage.json"
    waiting = False
    while not (pruned / "stage.json").is_file() and not done.is_file():
        if not waiting:
            run.say(f"waiting for the chief's pruned model ({pruned / 'stage.json'})")
            waiting = True
        time.sleep(poll)
    if done.is_file():
        run.say("the chief's LDS stage has finished")
        return
    run.say(f"[4/5] LDS: training members for the chief at {oracle_address()}")
    _, tuner = _lds_search(run, _read_json(pruned / "spec.json"), direction_rule)
    tuner.search(verbose=0)


def final_stage(run: Run, nhn_spec: dict, final_recipe: str) -> dict:
    """5. Trains the NHN from scratch (again when asked for the other recipe)."""

    def work():
        paper = final_recipe == "paper"
        how = "cutout, dropout" if paper else "no augmentation or dropout"
        epochs = run.budget.train_epochs
        run.say(f"[5/5] training the NHN from scratch ({epochs} epochs, {how})")
        spec = nhn_spec if paper else dict(nhn_spec, dropout=0.0)
        model, metrics = train_spec(
            spec, run.dataset, epochs, run.seed + 2, augment=paper, verbose=run.verbose
        )
        return model, spec, {**metrics, "recipe": final_recipe}

    def keep(result):
        return result.get("recipe", "paper") == final_recipe

    return _run_stage(run.root / "final", work, keep)[0]
