"""The NHN pipeline (Algorithm 2): `spzoo search nhn --dataset D`.

    layer-hierarchy search (MacroSearchOracle, SmoothInit)  -> macro/
    train the best base model from scratch                  -> base/
    DNP (kernel std threshold, neuron removal), retrain     -> pruned/
    LDS (LocationDirectionOracle, shared add-on weights)    -> lds/
    train the NHN from scratch (cutout, dropout, NHN recipe) -> final/

Each stage writes its artifacts under `<directory>/nhn/<stage>/` and is
skipped when they exist, so a re-run resumes at the first unfinished stage;
the two searches are KerasTuner projects and resume trial by trial. The
recipe of every training is `nhn_optimizer` (Nesterov momentum 0.9,
l2 2e-4, clipping 5.0, cosine 0.05 -> 0.001); the final training adds
cutout (with pad-and-crop, and flips where the dataset allows them:
`spzoo.data.load(augment=True)`) and
dropout. Budgets (the paper's run: L=12, 310/160/260 epochs, 300+300 LDS
cycles of K=20 on CIFAR-10):

| budget | L | F  | macro trials x ep | train ep | LDS K, cycles loc+dir, M |
| ------ | - | -- | ----------------- | -------- | ------------------------ |
| small  | 6 | 16 | 4 x 1             | 6        | 20, 3+1, 4               |
| short  | 6 | 16 | 4 x 0.25          | 2        | 20, 3+1, 30              |
| tiny   | 6 | 4  | 2 x 0.05          | 0.1      | 10, 1+1, 1               |

(train ep: the base, pruned and final trainings each. `short` is `small`
for a 60k-image set such as Fashion-MNIST on a CPU: fewer epochs of more
data, and M=30 so that, as in the paper, one LDS cycle of K=20 members
traverses the training set; with M=4 the shared add-on weights barely
move and the search keeps no add-on.)
"""

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

BATCH_SIZE = 100
SEGMENTS = 3


@dataclasses.dataclass(frozen=True)
class NHNBudget:
    """How much each stage of the pipeline may spend (see the module table)."""

    name: str
    num_layers: int
    filters: int
    macro_trials: int
    macro_epochs: float
    train_epochs: float
    population: int
    location_cycles: int
    direction_cycles: int
    lds_steps: int
    prune_fraction: float = 0.85
    sparsity: float = 0.1
    dropout: float = 0.2


NHN_BUDGETS = {
    "small": NHNBudget("small", 6, 16, 4, 1.0, 6.0, 20, 3, 1, 4),
    "short": NHNBudget("short", 6, 16, 4, 0.25, 2.0, 20, 3, 1, 30),
    "tiny": NHNBudget("tiny", 6, 4, 2, 0.05, 0.1, 10, 1, 1, 1),
}


def load_arrays(dataset: str, split: str) -> tuple:
    """`(x, y)` NumPy arrays of a whole split (LDS slices them per member)."""
    from spzoo import data as spdata

    xs, ys = [], []
    for x, y in spdata.load(dataset, split, batch_size=512, shuffle=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def train_spec(
    spec: dict,
    dataset: str,
    epochs: float,
    seed: int = 0,
    augment: bool = False,
    verbose: int = 0,
) -> tuple:
    """Trains an NHN spec from scratch with the NHN recipe (`nhn_optimizer`).

    Args:
        spec: An `spzoo.models.nhn` spec.
        dataset: Dataset name.
        epochs: Passes over the training split (fractions allowed).
        seed: Seed of weights and shuffling.
        augment: Cutout with pad-and-crop and flips where allowed (final training).
        verbose: Keras progress bar (1) or silent (0).

    Returns:
        `(model, {"accuracy", "params", "score"})` on the eval split.
    """
    from spzoo.tuners.macro_search import nhn_optimizer, steps_for

    from spzoo import data as spdata
    from spzoo.models.nhn import build_nhn

    info = spdata.get(dataset)
    keras.utils.set_random_seed(seed)
    model = build_nhn(spec, info.input_shape, info.num_classes)
    steps = steps_for(info.sizes["train"], BATCH_SIZE, epochs)
    model.compile(
        optimizer=nhn_optimizer(steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    train = spdata.load(dataset, "train", BATCH_SIZE, seed=seed, augment=augment)
    model.fit(train.repeat(), epochs=1, steps_per_epoch=steps, verbose=verbose)
    return model, evaluate(model, dataset)


def evaluate(model, dataset) -> dict:
    """Eval-split accuracy, effective parameters and NHN score of a model."""
    from spzoo import data as spdata
    from spzoo import metrics
    from spzoo.nhn.masked import effective_params

    if not model.compiled:
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    _, accuracy = model.evaluate(
        spdata.load(dataset, "eval", 256, shuffle=False), verbose=0
    )
    params = effective_params(model)
    error = 100.0 * (1.0 - float(accuracy))
    return {
        "accuracy": float(accuracy),
        "params": int(params),
        "score": metrics.nhn_score(error, params),
    }


def _write_json(path: Path, value) -> None:
    from spzoo.training import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=1))


def _stage_done(stage: Path) -> dict | None:
    path = stage / "stage.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _finish(stage: Path, model, spec, result: dict) -> dict:
    from spzoo.training import save_model_atomic

    _write_json(stage / "spec.json", spec)
    if model is not None:
        save_model_atomic(model, stage / "model.keras")
    _write_json(stage / "stage.json", result)
    return result


def run_nhn_pipeline(
    dataset: str,
    directory: str,
    budget: str = "small",
    seed: int = 0,
    overwrite: bool = False,
    verbose: int = 1,
    macro_supernet: bool = False,
    final_recipe: str = "paper",
    direction_rule: str = "sampled",
) -> dict:
    """Runs (or resumes) the NHN pipeline on a dataset.

    Args:
        dataset: A name from `spzoo.data.list_datasets()` (image data).
        directory: Root of the run; stages go to `<directory>/nhn/`.
        budget: `"small"`, `"short"` or `"tiny"` (see `NHN_BUDGETS`).
        seed: Seed of searches and weights.
        overwrite: Start afresh instead of resuming.
        verbose: 0 silent, 1 progress per stage.
        macro_supernet: Rank the macro candidates on a weight-shared
            `MacroSupernet` (trained `macro_trials x macro_epochs` epochs
            once) instead of training each candidate `macro_epochs`.
        final_recipe: `"paper"`: the final training adds cutout (with
            pad-and-crop and flips) and dropout, as the paper does; `"base"`:
            the recipe of the base and pruned trainings, no augmentation or
            dropout (better for networks of a few thousand parameters trained
            a few epochs, which the paper's regularisation underfits). A
            finished final stage trained with the other recipe is re-trained.
        direction_rule: LDS direction search: `"sampled"` (connections
            drawn in proportion to their kernels' standard deviation) or
            `"threshold"` (the highest standard deviations, as the paper
            writes); see `spzoo.tuners.location_direction`.

    Returns:
        The summary written to `<directory>/nhn/summary.json`: accuracy,
        params and NHN score of the base, pruned and NHN models, the DNP
        and LDS results and the time of each stage.
    """
    import shutil

    from spzoo.tuners import location_direction as lds
    from spzoo.tuners.macro_search import (
        MacroSearchOracle,
        MacroSpace,
        MacroTuner,
        steps_for,
    )

    from spzoo import data as spdata
    from spzoo.nhn import dnp

    if budget not in NHN_BUDGETS:
        raise ValueError(
            f"`budget` must be one of {sorted(NHN_BUDGETS)}; received {budget!r}."
        )
    if final_recipe not in ("paper", "base"):
        raise ValueError(
            f"`final_recipe` must be 'paper' or 'base'; received {final_recipe!r}."
        )
    lds.check_direction_rule(direction_rule)
    b = NHN_BUDGETS[budget]
    info = spdata.get(dataset)
    if info.modality != "image":
        raise ValueError(f"`dataset` must be an image dataset; {dataset!r} is not.")
    root = Path(directory) / "nhn"
    if overwrite and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / "settings.json", {"dataset": dataset, **dataclasses.asdict(b)})
    say = print if verbose else (lambda *a, **k: None)
    times = {}

    # 1. Layer-hierarchy search.
    stage = root / "macro"
    result = _stage_done(stage)
    if result is None:
        start = time.time()
        space = MacroSpace(b.num_layers, SEGMENTS, b.filters)
        oracle = MacroSearchOracle(space, max_trials=b.macro_trials, seed=seed)
        tuner = MacroTuner(
            oracle,
            info.input_shape,
            info.num_classes,
            steps=steps_for(
                info.sizes["train"],
                BATCH_SIZE,
                b.macro_epochs * (b.macro_trials if macro_supernet else 1),
            ),
            seed=seed,
            supernet=macro_supernet,
            directory=str(root),
            project_name="macro_search",
        )
        say(f"[1/5] layer-hierarchy search: {b.macro_trials} random candidates")
        tuner.search(
            spdata.load(dataset, "train", BATCH_SIZE, seed=seed),
            spdata.load(dataset, "eval", 256, shuffle=False),
            verbose=0,
        )
        best = oracle.get_best_trials(1)[0]
        spec = oracle.architecture(best.trial_id)
        spec["name"] = "nhn_base"
        result = _finish(
            stage,
            None,
            spec,
            {
                "best_trial": best.trial_id,
                "search_accuracy": best.score,
                "trials": len(oracle.trials),
                "seconds": time.time() - start,
            },
        )
    base_spec = json.loads((stage / "spec.json").read_text())
    times["macro"] = result["seconds"]

    # 2. Train the base model from scratch.
    stage = root / "base"
    result = _stage_done(stage)
    if result is None:
        say(f"[2/5] training the base model ({b.train_epochs} epochs)")
        start = time.time()
        model, metrics_ = train_spec(
            base_spec, dataset, b.train_epochs, seed, verbose=verbose
        )
        result = _finish(
            stage, model, base_spec, {**metrics_, "seconds": time.time() - start}
        )
    base = result
    times["base"] = result["seconds"]

    # 3. DNP, then train the pruned model from scratch.
    stage = root / "pruned"
    result = _stage_done(stage)
    if result is None:
        say(f"[3/5] DNP: removing {b.prune_fraction:.0%} of 3x3/5x5 kernels")
        start = time.time()
        trained = keras.saving.load_model(root / "base" / "model.keras")
        threshold = (
            dnp.threshold_for_fraction(trained, base_spec, b.prune_fraction)
            if dnp.kernel_std(trained, base_spec)
            else 0.0  # no 3x3/5x5 conv layer: nothing to prune
        )
        small, pruned_model, masked, found = dnp.prune(
            trained, base_spec, threshold, info.input_shape, info.num_classes
        )
        before = evaluate(pruned_model, dataset)
        _write_json(stage / "masked_spec.json", masked)
        model, metrics_ = train_spec(
            small, dataset, b.train_epochs, seed + 1, verbose=verbose
        )
        result = _finish(
            stage,
            model,
            small,
            {
                **metrics_,
                "threshold": threshold,
                "removed_kernels": found["removed_kernels"],
                "kernels": found["kernels"],
                "neurons": {str(i): int(a.sum()) for i, a in found["alive"].items()},
                "neurons_before": {str(i): len(a) for i, a in found["alive"].items()},
                "accuracy_after_pruning_before_retraining": before["accuracy"],
                "seconds": time.time() - start,
            },
        )
    pruned = result
    pruned_spec = json.loads((stage / "spec.json").read_text())
    times["dnp_retrain"] = result["seconds"]

    # 4. LDS on the pruned model with shared add-on weights.
    stage = root / "lds"
    result = _stage_done(stage)
    if result is not None and result.get("direction_rule", "sampled") != direction_rule:
        raise ValueError(
            f"The LDS stage in {stage} ran with direction_rule="
            f"{result.get('direction_rule', 'sampled')!r}, not {direction_rule!r}; "
            "use the same rule, or another directory."
        )
    if result is None:
        say(
            f"[4/5] LDS: K={b.population}, {b.location_cycles} location + "
            f"{b.direction_cycles} direction cycles, M={b.lds_steps}"
        )
        start = time.time()
        base_model = keras.saving.load_model(root / "pruned" / "model.keras")
        cycles = b.location_cycles + b.direction_cycles
        shared = lds.SharedAddOns(
            pruned_spec,
            base_model,
            info.input_shape,
            info.num_classes,
            total_steps=b.population * cycles * b.lds_steps,
        )
        oracle = lds.LocationDirectionOracle(
            pruned_spec,
            population_size=b.population,
            location_cycles=b.location_cycles,
            direction_cycles=b.direction_cycles,
            sparsity=b.sparsity,
            seed=seed,
            direction_rule=direction_rule,
        )
        x_train, y_train = load_arrays(dataset, "train")
        x_eval, y_eval = load_arrays(dataset, "eval")
        tuner = lds.LDSTuner(
            oracle,
            shared,
            (x_train, y_train, x_eval, y_eval),
            steps=b.lds_steps,
            batch_size=BATCH_SIZE,
            eval_batch_size=min(500, len(x_eval)),
            progress=bool(verbose),
            directory=str(root),
            project_name="lds_search",
        )
        tuner.search(verbose=0)
        gene = oracle.best_location
        directions = tuner.load_direction(oracle.best_direction["trial"])
        nhn_spec = dict(pruned_spec)
        nhn_spec["name"] = "nhn"
        nhn_spec["dropout"] = b.dropout
        nhn_spec["addons"] = [
            {
                "from": a,
                "to": t,
                "kernel": k,
                "mask": directions[f"addon_{a}_{t}_k{k}"].astype(int).tolist(),
            }
            for a, t, k in lds.gene_addons(gene, pruned_spec)
        ]
        result = _finish(
            stage,
            None,
            nhn_spec,
            {
                "location_gene": gene,
                "addons": len(nhn_spec["addons"]),
                "direction_accuracy": oracle.best_direction["accuracy"],
                "cycles": oracle.log,
                "candidates": len(oracle.trials),
                "direction_rule": direction_rule,
                "seconds": time.time() - start,
            },
        )
    nhn_spec = json.loads((stage / "spec.json").read_text())
    lds_result = result
    times["lds"] = result["seconds"]

    # 5. Final training of the NHN from scratch.
    stage = root / "final"
    result = _stage_done(stage)
    if result is not None and result.get("recipe", "paper") != final_recipe:
        result = None  # asked for the other recipe: train again
    if result is None:
        paper = final_recipe == "paper"
        how = "cutout, dropout" if paper else "no augmentation or dropout"
        say(f"[5/5] training the NHN from scratch ({b.train_epochs} epochs, {how})")
        start = time.time()
        final_spec = nhn_spec if paper else dict(nhn_spec, dropout=0.0)
        model, metrics_ = train_spec(
            final_spec,
            dataset,
            b.train_epochs,
            seed + 2,
            augment=paper,
            verbose=verbose,
        )
        result = _finish(
            stage,
            model,
            final_spec,
            {**metrics_, "recipe": final_recipe, "seconds": time.time() - start},
        )
    times["final"] = result["seconds"]
    summary = {
        "dataset": dataset,
        "budget": dataclasses.asdict(b),
        "base": base,
        "pruned": pruned,
        "nhn": result,
        "lds": {k: v for k, v in lds_result.items() if k != "cycles"},
        "seconds": times,
        "model_path": str(stage / "model.keras"),
    }
    _write_json(root / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    """The base / pruned / NHN comparison as a Markdown table."""
    lines = [
        "| model | accuracy | params | NHN score |",
        "| ----- | -------- | ------ | --------- |",
    ]
    for key, label in (
        ("base", "base (macro search)"),
        ("pruned", "DNP"),
        ("nhn", "NHN"),
    ):
        r = summary[key]
        lines.append(
            f"| {label} | {100 * r['accuracy']:.2f}% | {r['params']:,} | "
            f"{r['score']:.3f} |"
        )
    return "\n".join(lines)
