"""Measured effects of the papers' readings offered as options (issue 19).

One command per row of docs/fidelity.md that needs training; each is
resumable (run it again after an interruption: finished runs are kept,
a training resumes from its Keras backup, a search from its KerasTuner
project) and writes one small JSON under `bench/results/fidelity/` when it
ends:

    python bench/fidelity.py placement    # SP-ResNet: neuron types interleaved / blocks
    python bench/fidelity.py reductions   # ResNet 3-48: three reductions vs two
    python bench/fidelity.py pruning      # pruning NAS: l2 / l2_fan_in / scope all
    python bench/fidelity.py lds          # NHN: LDS directions by threshold vs sampled
    python bench/fidelity.py counts       # no training: widths, thresholds (seconds)

`placement` and `reductions` train at the CPU scale of `bench/table2.py`
(1/3 of the paper's width, Fashion-MNIST, recipe `fast`, 5 epochs, seed
0 by default; `--seeds 0 1 2` for more): both sides with the same budget
and seed. The default-reading side is taken from `bench/results/table2/`
when that run exists with the same settings, else trained here (and
written there, as `bench/table2.py` would). `pruning` runs the three
importance / scope variants on sklearn digits with the budget of
docs/search.md (`small`, N_R = 4, 30 iterations, seed 0). `lds` runs the
NHN pipeline (`short` budget, Fashion-MNIST, final recipe `base`) once with
sampled directions, then again with thresholded ones from a copy of the
first run's macro, base and pruned stages, so both LDS searches start from
the same pruned network.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from _common import RESULTS, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / "runs" / "fidelity"
OUT = RESULTS / "fidelity"
MEASURES = ("placement", "reductions", "pruning", "lds", "counts")
# Lee & Wang, Table I, audio column: training examples and the printed N_F.
TABLE1_AUDIO = {
    "Commands": (85_000, 20),
    "Vocalset": (3_500, 4),
    "ESC": (2_000, 4),
    "Urbansound": (8_000, 6),
    "GTZAN": (1_000, 3),
    "FMA": (25_000, 12),
}
PAIRS = {  # measure: (table2 design of the default reading, the option's spec change)
    "placement": ("sp_resnet", "sp_resnet_interleaved"),
    "reductions": ("resnet_3_48", {"reductions": "after_every_stack"}),
}


def _write_json(name: str, record: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return write_result(f"fidelity/{name}", json.dumps(record, indent=2) + "\n")


def _option_spec(measure: str, divisor: int) -> dict:
    from table2 import scaled_spec

    design, change = PAIRS[measure]
    if isinstance(change, str):  # another shipped spec
        from spzoo.models import get_spec

        spec = json.loads(json.dumps(get_spec(change)))
        spec["stem_filters"] = max(1, round(spec["stem_filters"] / divisor))
        for stack in spec["stacks"]:
            stack["filters"] = max(1, round(stack["filters"] / divisor))
        spec["name"] = f"{change}_w{divisor}"
        return spec
    spec = scaled_spec(design, divisor)
    spec.update(change)
    spec["name"] = f"{spec['name']}_{'_'.join(map(str, change.values()))}"
    return spec


def _default_side(design, seed, epochs, recipe, divisor) -> dict:
    import table2

    path = RESULTS / "table2" / f"{design}.seed{seed}.json"
    if path.exists():
        record = json.loads(path.read_text())
        same = (
            record["epochs"] == epochs
            and record["recipe"].get("name") == recipe
            and record["width_divisor"] == divisor
        )
        if same:
            return {**record, "source": str(path.relative_to(ROOT))}
    return table2.run_one(design, seed, epochs, recipe, divisor)


def _option_side(measure, seed, epochs, recipe, divisor) -> dict:
    from spzoo.training import train

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{measure}.option.seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    spec = _option_spec(measure, divisor)
    start = time.time()
    result = train(
        spec,
        "fashion_mnist",
        epochs=epochs,
        seed=seed,
        recipe=recipe,
        output_dir=RUN_DIR / f"{measure}.w{divisor}.e{epochs}.{recipe}.seed{seed}",
        verbose=2,
    )
    record = {
        "spec": spec,
        "seed": seed,
        "eval_accuracy": result["eval_accuracy"],
        "params": result["params"],
        "macs": result["macs"],
        "epochs": epochs,
        "seconds_per_epoch": result["seconds_per_epoch"],
        "wall_seconds": round(time.time() - start, 1),
        "recipe": result["recipe"],
    }
    _write_json(path.name, record)
    return record


def paired(measure, seeds, epochs, recipe, divisor) -> dict:
    design = PAIRS[measure][0]
    runs = []
    for seed in seeds:
        default = _default_side(design, seed, epochs, recipe, divisor)
        option = _option_side(measure, seed, epochs, recipe, divisor)
        runs.append(
            {
                "seed": seed,
                "default": {k: default[k] for k in ("eval_accuracy", "params", "macs")},
                "default_source": default.get("source", "trained by bench/table2.py"),
                "option": {k: option[k] for k in ("eval_accuracy", "params", "macs")},
                "option_spec": option["spec"]["name"],
                "difference_points": round(
                    100 * (option["eval_accuracy"] - default["eval_accuracy"]), 2
                ),
            }
        )
    return {
        "measure": measure,
        "design": design,
        "dataset": "fashion_mnist",
        "width_divisor": divisor,
        "epochs": epochs,
        "recipe": recipe,
        "runs": runs,
    }


PRUNING_VARIANTS = {
    "l2": {"importance": "l2", "scope": "inner"},
    "l2_fan_in": {"importance": "l2_fan_in", "scope": "inner"},
    "scope_all": {"importance": "l2", "scope": "all"},
}


def pruning(
    seed: int,
    budget: str = "small",
    iterations: int = 30,
    run_dir: Path = RUN_DIR,
    variants=tuple(PRUNING_VARIANTS),
) -> dict:
    """The pruning variants; `budget`, `iterations` and `variants` are the
    run's (docs/search.md's `small`, 30, all three), smaller only in tests."""
    from spzoo.tuners.pruning import run_pruning_search

    out = {}
    for name in variants:
        options = PRUNING_VARIANTS[name]
        summary = run_pruning_search(
            "sklearn_digits",
            str(run_dir / f"pruning_{name}.seed{seed}"),
            budget=budget,
            num_iterations=iterations,
            num_remove=4,
            seed=seed,
            verbose=1,
            **options,
        )
        first, last = summary["iterations"][0], summary["iterations"][-1]
        removed: dict = {}
        for it in summary["iterations"]:
            for key, types in it["removed"].items():
                stack = key.split("_")[0] if key.startswith("stack") else "head"
                for kind in types:
                    removed.setdefault(stack, {}).setdefault(kind, 0)
                    removed[stack][kind] += 1
        out[name] = {
            **options,
            "start_accuracy": first["val_accuracy"],
            "final_accuracy": last["val_accuracy"],
            "params": [first["params"], last["params"]],
            "iterations": len(summary["iterations"]) - 1,
            "stop_reason": summary["stop_reason"],
            "removed_by_stack_and_type": removed,
            "final_importance_shares": last["importance_shares"],
        }
    return {
        "measure": "pruning",
        "dataset": "sklearn_digits",
        "budget": budget,
        "num_remove": 4,
        "num_iterations": iterations,
        "seed": seed,
        "variants": out,
    }


def lds(seed: int) -> dict:
    from spzoo.tuners.nhn_pipeline import run_nhn_pipeline

    out = {}
    first = RUN_DIR / f"lds_sampled.seed{seed}"
    for rule in ("sampled", "threshold"):
        directory = RUN_DIR / f"lds_{rule}.seed{seed}"
        if rule == "threshold" and not (directory / "nhn").exists():
            for stage in ("macro", "base", "pruned"):  # the same pruned network
                shutil.copytree(first / "nhn" / stage, directory / "nhn" / stage)
        summary = run_nhn_pipeline(
            "fashion_mnist",
            str(directory),
            budget="short",
            seed=seed,
            final_recipe="base",
            direction_rule=rule,
        )
        out[rule] = {k: summary[k] for k in ("base", "pruned", "nhn", "lds")}
    return {
        "measure": "lds",
        "dataset": "fashion_mnist",
        "budget": "short",
        "final_recipe": "base",
        "seed": seed,
        "rules": out,
    }


def counts() -> dict:
    """What needs no training: Table I audio widths by both width rules, and
    the zoo's gated CNN thresholds as probabilities of a gate being open."""
    from spzoo.data.scaling import scale_settings
    from spzoo.layers import closed_bound, open_probability

    widths = {
        name: {
            "examples": n,
            "table1_printed": printed,
            "formula": scale_settings(n, 1).num_filters,
            "table1_rule": scale_settings(n, 3).num_filters,
        }
        for name, (n, printed) in TABLE1_AUDIO.items()
    }
    manifest = json.loads((ROOT / "saved_models" / "manifest.json").read_text())
    models = manifest.get("models", manifest)
    entries = models if isinstance(models, list) else list(models.values())
    gated = next(e for e in entries if e.get("name") == "gated_cnn.fashion_mnist")
    curve = gated["threshold"]["curve"]
    thresholds = [
        {
            "threshold": t,
            "open_probability": float(open_probability(t)),
            "acts": t > closed_bound(),
        }
        for t in (-7.0, round(closed_bound(), 3), 0.0, 2.0, 4.0, 5.0, 6.0)
    ]
    return {
        "measure": "counts",
        "table1_audio_widths": widths,
        "closed_bound": closed_bound(),
        "thresholds": thresholds,
        "gated_cnn_log_alpha_range": gated["threshold"]["range"],
        "gated_cnn_curve": curve,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("measure", choices=MEASURES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--width-divisor", type=int, default=3)
    args = parser.parse_args(argv)
    name = f"{args.measure}.json"
    if (OUT / name).exists():
        print(f"{OUT / name} exists; delete it to measure again")
        return 0
    if args.measure in PAIRS:
        record = paired(
            args.measure, args.seeds, args.epochs, args.recipe, args.width_divisor
        )
    elif args.measure == "pruning":
        record = pruning(args.seeds[0])
    elif args.measure == "counts":
        record = counts()
    else:
        record = lds(args.seeds[0])
    record["command"] = "python bench/fidelity.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    record["machine"] = machine()
    print(json.dumps(record, indent=2))
    _write_json(name, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
