"""The NHN pipeline (Algorithm 2): `spzoo search nhn --dataset D`.

    layer-hierarchy search (MacroSearchOracle, SmoothInit)  -> macro/
    train the best base model from scratch                  -> base/
    DNP (kernel std threshold, neuron removal), retrain     -> pruned/
    LDS (LocationDirectionOracle, shared add-on weights)    -> lds/
    train the NHN from scratch (cutout, dropout, NHN recipe) -> final/

Each stage writes its artifacts under `<directory>/nhn/<stage>/` and is
skipped when they exist, so a re-run resumes at the first unfinished stage;
the two searches are KerasTuner projects and resume trial by trial. Each
stage is one function below (`macro_stage`, ..., `final_stage`);
`run_nhn_pipeline` chains them. The
recipe of every training is `spzoo.nhn.recipe.nhn_optimizer` (Nesterov momentum 0.9,
l2 2e-4, clipping 5.0, cosine 0.05 -> 0.001); the final training adds
cutout (with pad-and-crop, and flips where the dataset allows them:
`spzoo.data.load(augment=True)`) and
dropout. Budgets (the paper's run: L=12, 310/160/260 epochs, 300+300 LDS
cycles of K=20 on CIFAR-10):

| budget | L | F  | macro trials x ep | train ep | LDS K, cycles loc+dir, M |
| ------ | - | -- | ----------------- | -------- | ------------------------ |
| medium | 6 | 16 | 4 x 1             | 6        | 20, 3+1, 30              |
| small  | 6 | 16 | 4 x 1             | 6        | 20, 3+1, 4               |
| short  | 6 | 16 | 4 x 0.25          | 2        | 20, 3+1, 30              |
| tiny   | 6 | 4  | 2 x 0.05          | 0.1      | 10, 1+1, 1               |

(train ep: the base, pruned and final trainings each. `short` is `small`
for a 60k-image set such as Fashion-MNIST on a CPU: fewer epochs of more
data, and M=30 so that, as in the paper, one LDS cycle of K=20 members
traverses the training set; with M=4 the shared add-on weights barely
move and the search keeps no add-on. `medium` is `short` with `small`'s
epochs: the zoo's Fashion-MNIST NHN, about 40 minutes here.)
"""

import dataclasses
import shutil
from pathlib import Path

from spzoo import data as spdata
from spzoo.nhn.recipe import train_spec
from spzoo.tuners import lds_operators
from spzoo.tuners.base import is_worker, single_process
from spzoo.tuners.nhn_stages import (
    Run,
    base_stage,
    final_stage,
    join_lds_stage,
    lds_stage,
    load_arrays,
    macro_stage,
    pruning_stage,
    write_json,
)

__all__ = [
    "NHN_BUDGETS",
    "NHNBudget",
    "format_summary",
    "load_arrays",
    "run_nhn_pipeline",
    "train_spec",
]

FINAL_RECIPES = ("paper", "base")
MACRO_SEARCHES = ("random", "supernet", "enas")


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
    enas_controller_steps: int = 10  # ENAS: controller updates per epoch
    enas_aggregate: int = 5  # ENAS: samples per update
    enas_derive: int = 10  # ENAS: candidates derived at the end


NHN_BUDGETS = {
    "medium": NHNBudget("medium", 6, 16, 4, 1.0, 6.0, 20, 3, 1, 30),
    "small": NHNBudget("small", 6, 16, 4, 1.0, 6.0, 20, 3, 1, 4),
    "short": NHNBudget("short", 6, 16, 4, 0.25, 2.0, 20, 3, 1, 30),
    "tiny": NHNBudget(
        "tiny",
        *(6, 4, 2, 0.05, 0.1, 10, 1, 1, 1),
        enas_controller_steps=2,
        enas_aggregate=2,
        enas_derive=2,
    ),
}


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
    macro_search: str = "random",
    tensorboard: bool = True,
) -> dict:
    """Runs (or resumes) the NHN pipeline on a dataset.

    Args:
        dataset: A name from `spzoo.data.list_datasets()` (image data).
        directory: Root of the run; stages go to `<directory>/nhn/`.
        budget: `"medium"`, `"small"`, `"short"` or `"tiny"` (see
            `NHN_BUDGETS`).
        seed: Seed of searches and weights.
        overwrite: Start afresh instead of resuming.
        verbose: 0 silent, 1 progress per stage.
        macro_supernet: Deprecated alias of `macro_search="supernet"`.
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
        macro_search: The layer-hierarchy search: `"random"` (each of
            `macro_trials` random candidates trained `macro_epochs`),
            `"supernet"` (the same candidates ranked on a weight-shared
            `MacroSupernet` trained `macro_trials x macro_epochs` epochs) or
            `"enas"` (Pham et al.'s controller: `macro_trials` ENAS epochs of
            `macro_epochs` on the shared weights, see `EnasOracle`).
        tensorboard: The random macro search's trained candidates log for
            TensorBoard in `<directory>/nhn/macro_search/tensorboard/`
            (the supernet-ranked, ENAS and LDS searches train in loops of
            their own and do not log).

    Returns:
        The summary written to `<directory>/nhn/summary.json`: accuracy,
        params and NHN score of the base, pruned and NHN models, the DNP
        and LDS results and the time of each stage. None on a worker.

    Chief and workers (KerasTuner's `KERASTUNER_TUNER_ID`,
    `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`, the same arguments and
    a shared `directory`): the chief runs every stage and serves the LDS
    search; a worker waits for the chief's pruned model, trains LDS members
    until the search ends, and returns None (it ignores `overwrite`).
    """
    if budget not in NHN_BUDGETS:
        raise ValueError(
            f"`budget` must be one of {sorted(NHN_BUDGETS)}; received {budget!r}."
        )
    if final_recipe not in FINAL_RECIPES:
        raise ValueError(
            f"`final_recipe` must be 'paper' or 'base'; received {final_recipe!r}."
        )
    lds_operators.check_direction_rule(direction_rule)
    macro_search = "supernet" if macro_supernet else macro_search
    if macro_search not in MACRO_SEARCHES:
        raise ValueError(
            f"`macro_search` must be one of {MACRO_SEARCHES}; received "
            f"{macro_search!r}."
        )
    b = NHN_BUDGETS[budget]
    info = spdata.get(dataset)
    if info.modality != "image":
        raise ValueError(f"`dataset` must be an image dataset; {dataset!r} is not.")
    root = Path(directory) / "nhn"
    run = Run(dataset, info, b, root, seed, verbose, tensorboard)
    if is_worker():
        join_lds_stage(run, direction_rule)
        return None
    if overwrite and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "settings.json", {"dataset": dataset, **dataclasses.asdict(b)})
    with single_process():  # workers join the LDS search only
        macro, base_spec = macro_stage(run, macro_search)
    base = base_stage(run, base_spec)
    pruned, pruned_spec = pruning_stage(run, base_spec)
    lds, nhn_spec = lds_stage(run, pruned_spec, direction_rule)
    final = final_stage(run, nhn_spec, final_recipe)
    summary = {
        "dataset": dataset,
        "budget": dataclasses.asdict(b),
        "base": base,
        "pruned": pruned,
        "nhn": final,
        "lds": {k: v for k, v in lds.items() if k != "cycles"},
        "seconds": {
            "macro": macro["seconds"],
            "base": base["seconds"],
            "dnp_retrain": pruned["seconds"],
            "lds": lds["seconds"],
            "final": final["seconds"],
        },
        "model_path": str(root / "final" / "model.keras"),
    }
    write_json(root / "summary.json", summary)
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
