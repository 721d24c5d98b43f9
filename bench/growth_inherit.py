"""Growth NAS with weight inheritance against training every child from scratch.

Two growth searches with the same data, space, seed and oracle settings,
one with `--inherit-weights` (a child starts from its parent's weights and
trains `--fraction` of the steps) and one without (the baseline), each
given the same wall time. They run one trial at a time, alternating (the
arm that has used less time goes next), so both see the same load on a
shared machine. Reports networks per hour and the best epsilon reached
over time, epsilon being the growth NAS's own objective; both arms are
scored with the baseline's fitted k, alpha_init and eta_init (their initial
populations are the same random networks, trained the same way), and with
their own.

    python bench/growth_inherit.py --dataset sklearn_digits --budget small \\
        --minutes 30 --population 10 --sample 3 --directory runs/growth_inherit

Resumable: the two searches are KerasTuner projects under `--directory`,
and the time each arm has used is saved after each trial
(`<directory>/bench_state.json`); run the same command again after an
interruption. The trial running at the kill is run again and only its
second run is counted. Results: `bench/results/growth_inherit.{json,md}`
(`--results` to write elsewhere).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import RESULTS, machine  # noqa: E402

from spzoo import data as spdata  # noqa: E402
from spzoo.io import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from spzoo.tuners.base import search_train_data  # noqa: E402
from spzoo.tuners.growth_inherit import inherited_schedule  # noqa: E402
from spzoo.tuners.growth_oracle import epsilon  # noqa: E402
from spzoo.tuners.growth_tuner import (  # noqa: E402
    inheritance_record,
    make_growth_search,
)

ARMS = ("scratch", "inherit")
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)
HEADER = (
    "arm",
    "networks",
    "children",
    "networks/h",
    "children/h",
    "best epsilon",
    *(f"best eps @{int(100 * c)}% time" for c in CHECKPOINTS),
    "best val_acc",
    "children started",
)


def arm_search(args, arm: str):
    """The arm's tuner (resumed if its project exists) and settings."""
    return make_growth_search(
        args.dataset,
        os.path.join(args.directory, arm),
        budget=args.budget,
        population_size=args.population,
        sample_size=args.sample,
        num_iterations=args.iterations,
        initial_growth=args.initial_growth,
        blocks_per_stack=args.blocks,
        seed=args.seed,
        inherit_fraction=args.fraction if arm == "inherit" else None,
    )[:2]


def run_one_trial(tuner, train, evaluation) -> bool:
    """Runs the arm's next trial; False when its search is over."""
    oracle = tuner.oracle
    before = len(oracle.history())
    oracle.max_trials = len(oracle.trials) + (0 if oracle._retry_queue else 1)
    tuner.search(train, evaluation, verbose=0)
    return len(oracle.history()) > before


def best_over_time(trials: list, reference) -> list:
    """`[(seconds, best epsilon so far)]` under `reference = (k, a0, e0)`."""
    best, curve = None, []
    for t in trials:
        value = epsilon(t["val_accuracy"], t["params"], *reference)
        best = value if best is None else max(best, value)
        curve.append((t["seconds"], best))
    return curve


def best_at(curve: list, seconds: float):
    values = [b for s, b in curve if s <= seconds]
    return values[-1] if values else None


def summarise(state: dict, oracles: dict) -> dict:
    """Networks per hour and best epsilon over time of both arms."""
    baseline = oracles["scratch"]
    if baseline.k is None:
        return {"arms": {}, "reference": None}
    reference = (baseline.k, baseline.alpha_init, baseline.eta_init)
    budget = state["settings"]["minutes"] * 60
    arms = {}
    for arm, oracle in oracles.items():
        trials = state["arms"][arm]["trials"]
        elapsed = state["arms"][arm]["elapsed"]
        own = (
            (oracle.k, oracle.alpha_init, oracle.eta_init)
            if oracle.k is not None
            else reference
        )
        curve = best_over_time(trials, reference)
        children = [t for t in trials if t["parent"] is not None]
        modes = [t["inheritance"] for t in children if t["inheritance"]]
        arms[arm] = {
            "networks": len(trials),
            "children": len(children),
            "elapsed_seconds": round(elapsed, 1),
            "networks_per_hour": round(3600 * len(trials) / elapsed, 2)
            if elapsed
            else None,
            "children_per_hour": round(
                3600 * len(children) / max(1e-9, elapsed - initial_seconds(trials)),
                2,
            )
            if children
            else None,
            "best_epsilon": curve[-1][1] if curve else None,
            "best_epsilon_own_k": max(
                (epsilon(t["val_accuracy"], t["params"], *own) for t in trials),
                default=None,
            ),
            "best_val_accuracy": max((t["val_accuracy"] for t in trials), default=None),
            "best_epsilon_at": {
                f"{int(100 * c)}%": best_at(curve, c * budget) for c in CHECKPOINTS
            },
            "inheritance": {m: modes.count(m) for m in sorted(set(modes))},
            "curve": curve,
        }
    return {
        "arms": arms,
        "reference": dict(zip(("k", "alpha_init", "eta_init"), reference, strict=True)),
    }


def initial_seconds(trials: list) -> float:
    """Time the arm spent on its initial population."""
    initial = [t["seconds"] for t in trials if t["parent"] is None]
    return max(initial) if initial else 0.0


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# Growth NAS: weight inheritance against training from scratch",
        "",
        f"Machine: {result['machine']}",
        "",
        f"`python bench/growth_inherit.py {result['command']}`",
        "",
        f"{s['dataset']}, budget {s['budget']} ({result['steps']} steps per network "
        f"from scratch, {result['inherit_steps']} per inheriting child), "
        f"n(P)={s['population']}, n(S)={s['sample']}, N_B={s['blocks']}, "
        f"N_G_init={s['initial_growth']}, seed {s['seed']}, {s['minutes']} min "
        "of wall time per arm, trials alternating between the arms.",
        "",
    ]
    summary = result["summary"]
    if not summary["arms"]:
        lines.append("The baseline's initial population has not finished: no epsilon.")
        return "\n".join(lines) + "\n"
    ref = summary["reference"]
    lines += [
        f"epsilon with the baseline's fit: k = {ref['k']:.4f}, alpha_init = "
        f"{ref['alpha_init']:.4f}, eta_init = {ref['eta_init']:,.0f}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| --- " * len(HEADER) + "|",
    ]

    def fmt(value, spec=".4f"):
        return "-" if value is None else format(value, spec)

    for arm in ARMS:
        a = summary["arms"][arm]
        name = "from scratch (baseline)" if arm == "scratch" else "inherit"
        started = ", ".join(f"{k} {v}" for k, v in a["inheritance"].items()) or "-"
        lines.append(
            f"| {name} | {a['networks']} | {a['children']} | "
            f"{fmt(a['networks_per_hour'], '.1f')} | "
            f"{fmt(a['children_per_hour'], '.1f')} | {fmt(a['best_epsilon'])} | "
            + " | ".join(fmt(v) for v in a["best_epsilon_at"].values())
            + f" | {fmt(a['best_val_accuracy'])} | {started} |"
        )
    base, inh = summary["arms"]["scratch"], summary["arms"]["inherit"]
    if base["children_per_hour"] and inh["children_per_hour"]:
        lines += [
            "",
            "Children per hour: "
            f"{inh['children_per_hour'] / base['children_per_hour']:.2f}x "
            "the baseline; best epsilon "
            f"{fmt(inh['best_epsilon'])} against the baseline's "
            f"{fmt(base['best_epsilon'])}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sklearn_digits")
    parser.add_argument("--budget", default="small", help="paper, small, tiny")
    parser.add_argument("--minutes", type=float, default=30, help="wall time per arm")
    parser.add_argument("--population", type=int, default=10, help="n(P)")
    parser.add_argument("--sample", type=int, default=3, help="n(S)")
    parser.add_argument("--iterations", type=int, default=500, help="n_iter")
    parser.add_argument("--initial-growth", type=int, default=5, help="N_G_init")
    parser.add_argument("--blocks", type=int, default=3, help="N_B")
    parser.add_argument("--fraction", type=float, default=0.3, help="inherit steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directory", default="runs/growth_inherit")
    parser.add_argument(
        "--results",
        default=str(RESULTS / "growth_inherit"),
        help="results path without extension (default bench/results/growth_inherit)",
    )
    args = parser.parse_args()
    if not args.minutes > 0:
        parser.error(f"--minutes must be > 0; received {args.minutes}")
    settings = {
        key: getattr(args, key)
        for key in (
            "dataset",
            "budget",
            "minutes",
            "population",
            "sample",
            "iterations",
            "initial_growth",
            "blocks",
            "fraction",
            "seed",
        )
    }
    state_path = os.path.join(args.directory, "bench_state.json")
    state = {
        "settings": settings,
        "arms": {a: {"elapsed": 0.0, "trials": []} for a in ARMS},
    }
    if os.path.isfile(state_path):
        saved = read_json(state_path, "bench state")
        changed = {
            k: v
            for k, v in saved["settings"].items()
            if k != "minutes" and settings[k] != v
        }
        if changed:
            parser.error(
                f"{state_path} was run with other settings {changed}; use the same "
                "ones (only --minutes may grow) or another --directory"
            )
        state["arms"] = saved["arms"]
    print(machine())
    print(
        "baseline: the same growth search training every child from scratch, "
        f"{args.minutes} min of wall time per arm"
    )
    searches = {arm: arm_search(args, arm) for arm in ARMS}
    tuners = {arm: tuner for arm, (tuner, _) in searches.items()}
    search_settings = searches["scratch"][1]
    # One training set per arm: each reshuffles per epoch, so trial n of
    # either arm sees the same batches while both arms train alike (their
    # initial populations), whichever arm ran last.
    train = {
        arm: search_train_data(args.dataset, search_settings.batch_size, args.seed)
        for arm in ARMS
    }
    evaluation = spdata.load(
        args.dataset, "eval", batch_size=search_settings.batch_size
    )
    budget = args.minutes * 60
    finished = set()
    while True:
        left = [
            a
            for a in ARMS
            if a not in finished and state["arms"][a]["elapsed"] < budget
        ]
        if not left:
            break
        arm = min(left, key=lambda a: state["arms"][a]["elapsed"])
        tuner = tuners[arm]
        start = time.time()
        progressed = run_one_trial(tuner, train[arm], evaluation)
        record = state["arms"][arm]
        record["elapsed"] += time.time() - start
        if not progressed:
            finished.add(arm)
        else:
            oracle = tuner.oracle
            trial_id = oracle.history()[-1]
            accuracy, params = oracle.metrics_of(trial_id)
            inherited = inheritance_record(tuner.project_dir, trial_id)
            record["trials"].append(
                {
                    "trial_id": trial_id,
                    "parent": oracle.origins.get(trial_id, {}).get("parent"),
                    "seconds": round(record["elapsed"], 2),
                    "val_accuracy": accuracy,
                    "params": params,
                    "inheritance": inherited["mode"] if inherited else None,
                }
            )
            print(
                f"[{arm:7s}] {record['elapsed'] / 60:6.1f}/{args.minutes:g} min  "
                f"trial {trial_id}  val_accuracy {accuracy:.4f}  params "
                f"{params:,.0f}" + (f"  ({inherited['mode']})" if inherited else ""),
                flush=True,
            )
        atomic_write_json(state_path, state, indent=1)
    result = {
        "machine": machine(),
        "command": " ".join(sys.argv[1:]),
        "settings": settings,
        "steps": search_settings.steps,
        "inherit_steps": inherited_schedule(
            search_settings.steps, search_settings.epochs, args.fraction
        )[0],
        "summary": summarise(state, {a: tuners[a].oracle for a in ARMS}),
        "arms": state["arms"],
    }
    atomic_write_text(args.results + ".json", json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    atomic_write_text(args.results + ".md", text)
    print(text)


if __name__ == "__main__":
    main()
