"""Growth and pruning NAS runs with a small budget, and their statistics.

Runs (or resumes: both searches are KerasTuner projects) a growth NAS and a
pruning NAS on one dataset, then writes `spzoo analyze`'s tables and plots
and a summary to `bench/results/search_<dataset>/`:

    python bench/search_runs.py --dataset sklearn_digits --directory runs/digits

The defaults are the runs reported in docs/search.md: sklearn digits, the
`small` budget, growth n(P)=10, n(S)=3, n_iter=30, N_G_init=5; pruning
N_R=4, n_iter=30. The baseline of each ratio is printed beside it: the
initial population (growth) and the starting ResNet (pruning).
"""

import argparse
import json
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import RESULTS, machine, write_result  # noqa: E402

from spzoo.tuners.growth_tuner import run_growth_search  # noqa: E402
from spzoo.tuners.pruning import run_pruning_search  # noqa: E402
from spzoo.tuners.statistics import analyze  # noqa: E402


def growth_lines(summary: dict) -> list:
    history = summary["history"]
    initial = history[: summary["oracle"]["population_size"]]
    children = history[len(initial) :]
    best = next(h for h in history if h["trial_id"] == summary["best_trial"])
    mean_acc = statistics.mean(h["val_accuracy"] for h in initial)
    mean_params = statistics.mean(h["params"] for h in initial)
    lines = [
        f"growth NAS: {len(history)} networks ({len(initial)} initial, "
        f"{len(children)} children), k = {summary['k']:.4f}, stop: "
        f"{summary['stop_reason'] or 'trial limit'}",
        f"initial population (baseline): mean val_accuracy {mean_acc:.4f}, "
        f"mean params {mean_params:,.0f}",
        f"best (trial {best['trial_id']}): val_accuracy {best['val_accuracy']:.4f} "
        f"({best['val_accuracy'] / mean_acc:.3f}x baseline), params "
        f"{best['params']:,.0f} ({best['params'] / mean_params:.3f}x), epsilon "
        f"{best['epsilon']:.4f}, {best['ops']} ops",
    ]
    if children:
        lines.append(
            f"children: mean val_accuracy "
            f"{statistics.mean(h['val_accuracy'] for h in children):.4f}, mean "
            f"epsilon {statistics.mean(h['epsilon'] for h in children):.4f} (initial "
            f"{statistics.mean(h['epsilon'] for h in initial):.4f})"
        )
    return lines


def pruning_lines(summary: dict) -> list:
    first, last = summary["iterations"][0], summary["iterations"][-1]
    return [
        f"pruning NAS: {len(summary['iterations']) - 1} iterations, stop: "
        f"{summary['stop_reason']}",
        f"starting ResNet (baseline): val_accuracy {first['val_accuracy']:.4f}, "
        f"params {first['params']:,}, inner neurons {first['neurons']}",
        f"pruned: val_accuracy {last['val_accuracy']:.4f} "
        f"({100 * (last['val_accuracy'] - first['val_accuracy']):+.2f} points), "
        f"params {last['params']:,} ({last['params'] / first['params']:.3f}x), "
        f"inner neurons {last['neurons']} ({last['neurons'] / first['neurons']:.3f}x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sklearn_digits")
    parser.add_argument("--directory", default="runs/digits")
    parser.add_argument("--budget", default="small")
    parser.add_argument("--growth-trials", type=int, default=30)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--initial-growth", type=int, default=5)
    parser.add_argument("--pruning-iterations", type=int, default=30)
    parser.add_argument("--remove", type=int, default=4)
    args = parser.parse_args()

    growth = run_growth_search(
        args.dataset,
        args.directory,
        budget=args.budget,
        max_trials=args.growth_trials,
        population_size=args.population,
        sample_size=args.sample,
        num_iterations=args.growth_trials,
        initial_growth=args.initial_growth,
        verbose=0,
    )
    pruning = run_pruning_search(
        args.dataset,
        args.directory,
        budget=args.budget,
        num_iterations=args.pruning_iterations,
        num_remove=args.remove,
        verbose=0,
    )
    out_dir = RESULTS / f"search_{args.dataset}"
    written = analyze(args.directory, output_dir=str(out_dir), top=10)
    lines = [f"machine: {machine()}", ""]
    lines += growth_lines(growth) + [""] + pruning_lines(pruning)
    text = "\n".join(lines) + "\n"
    print(text)
    for path in written:
        print(f"written {path}")
    for name, source in (
        ("growth_best_architecture.json", "growth/best_architecture.json"),
        ("pruned_architecture.json", None),
    ):
        target = out_dir / name
        if source is None:
            target.write_text(json.dumps(pruning["final_spec"], indent=2) + "\n")
        else:
            shutil.copyfile(os.path.join(args.directory, source), target)
    write_result(f"search_{args.dataset}/summary.txt", text)


if __name__ == "__main__":
    main()
