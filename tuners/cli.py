"""`spzoo search growth|pruning` and `spzoo analyze RUN_DIR`."""

import argparse

from spzoo.tuners.budget import BUDGETS

# Share of the steps a child that inherits its parent's weights trains.
DEFAULT_INHERIT_FRACTION = 0.3


def inherit_fraction(args) -> float | None:
    """`--inherit-weights` / `--inherit-fraction` as `GrowthOracle`'s setting."""
    if args.inherit_fraction is not None and not args.inherit_weights:
        raise ValueError("`--inherit-fraction` needs `--inherit-weights`.")
    if not args.inherit_weights:
        return None
    if args.inherit_fraction is None:
        return DEFAULT_INHERIT_FRACTION
    if not 0 < args.inherit_fraction <= 1:
        raise ValueError(
            "`--inherit-fraction` must be in (0, 1] (the share of the steps a "
            f"child that inherits trains); received {args.inherit_fraction}."
        )
    return args.inherit_fraction


def inheritance_line(history: list) -> str:
    """How the children of a growth search started, in one line."""
    records = [h["inheritance"] for h in history if h.get("parent") is not None]
    records = [r for r in records if r is not None]
    modes = [r["mode"] for r in records]
    steps = sorted({r["train_steps"] for r in records if r["mode"] != "scratch"})
    return (
        f"weight inheritance: {len(records)} children, {modes.count('exact')} "
        f"function-preserving, {modes.count('partial')} not (new paths "
        f"identity-like or the None op added), {modes.count('scratch')} from "
        "scratch (no parent weights); training steps per inheriting child: "
        + ("/".join(map(str, steps)) if steps else "none")
    )


def growth_command(args) -> int:
    """Runs or resumes a growth NAS; prints the best architecture."""
    from spzoo.tuners.growth_tuner import run_growth_search

    fraction = inherit_fraction(args)
    summary = run_growth_search(
        args.dataset,
        args.directory,
        budget=args.budget,
        max_trials=args.max_trials,
        population_size=args.population,
        sample_size=args.sample,
        num_iterations=args.iterations,
        max_ops=args.max_ops,
        initial_growth=args.initial_growth,
        search_blocks=args.search_blocks,
        search_growth=args.search_growth,
        blocks_per_stack=args.blocks,
        seed=args.seed,
        overwrite=args.overwrite,
        verbose=args.verbose,
        width_rule=args.width_rule,
        inherit_fraction=fraction,
        tensorboard=args.tensorboard,
    )
    if summary is None:
        print("worker finished: the chief holds the search results")
        return 0
    history = summary["history"]
    print(f"{len(history)} architectures evaluated; k = {summary['k']}")
    if fraction is not None:
        print(inheritance_line(history))
    if summary["stop_reason"]:
        print(f"stopped: {summary['stop_reason']}")
    if summary["best_trial"] is not None:
        best = next(h for h in history if h["trial_id"] == summary["best_trial"])
        print(
            f"best: trial {best['trial_id']}, epsilon {best['epsilon']:.4f}, "
            f"val_accuracy {best['val_accuracy']:.4f}, params {best['params']:,.0f}, "
            f"{best['ops']} ops"
        )
        print(f"spec written to {args.directory}/growth/best_architecture.json")
    return 0


def pruning_command(args) -> int:
    """Runs or resumes a pruning NAS; prints the pruned network's size."""
    from spzoo.tuners.pruning import run_pruning_search

    summary = run_pruning_search(
        args.dataset,
        args.directory,
        budget=args.budget,
        num_iterations=args.iterations,
        num_remove=args.remove,
        max_drop=args.max_drop,
        blocks_per_stack=args.blocks,
        max_trials=args.max_trials,
        seed=args.seed,
        overwrite=args.overwrite,
        verbose=args.verbose,
        importance=args.importance,
        width_rule=args.width_rule,
        scope=args.scope,
        tensorboard=args.tensorboard,
    )
    if summary is None:
        print("worker finished: the chief holds the search results")
        return 0
    first, last = summary["iterations"][0], summary["iterations"][-1]
    print(
        f"{len(summary['iterations']) - 1} pruning iterations; stopped: "
        f"{summary['stop_reason']}"
    )
    print(
        f"accuracy {first['val_accuracy']:.4f} -> {last['val_accuracy']:.4f}, "
        f"params {first['params']:,} -> {last['params']:,}, "
        f"pruned neurons {first['neurons']} -> {last['neurons']}"
    )
    print(f"pruned model written to {summary['model_path']}")
    return 0


def nhn_command(args) -> int:
    """Runs or resumes the NHN pipeline; prints base / pruned / NHN."""
    from spzoo.tuners.nhn_pipeline import format_summary, run_nhn_pipeline

    summary = run_nhn_pipeline(
        args.dataset,
        args.directory,
        budget=args.budget,
        seed=args.seed,
        overwrite=args.overwrite,
        verbose=args.verbose,
        macro_search=macro_search(args),
        final_recipe=args.final_recipe,
        direction_rule=args.direction_rule,
        tensorboard=args.tensorboard,
    )
    if summary is None:
        print("worker finished: the chief holds the search results")
        return 0
    print(format_summary(summary))
    print(f"NHN model written to {summary['model_path']}")
    return 0


def macro_search(args) -> str:
    """`--macro`, with the deprecated `--macro-supernet` as `--macro supernet`."""
    if not args.macro_supernet:
        return args.macro
    if args.macro not in ("random", "supernet"):
        raise ValueError(
            f"`--macro-supernet` (deprecated: `--macro supernet`) conflicts with "
            f"`--macro {args.macro}`."
        )
    print("note: --macro-supernet is deprecated; use --macro supernet")
    return "supernet"


def analyze_command(args) -> int:
    """Writes the network statistics tables and plots of a finished search."""
    from spzoo.tuners.statistics import analyze

    written = analyze(args.run_dir, output_dir=args.output_dir, top=args.top)
    for path in written:
        if path.endswith(".md"):
            with open(path) as f:
                print(f.read())
    print("written: " + ", ".join(written))
    return 0


def _common(p) -> None:
    p.add_argument("--dataset", required=True, help="dataset (see `spzoo data list`)")
    p.add_argument(
        "--budget",
        choices=sorted(BUDGETS),
        default="small",
        help="shrink epochs and widths: paper (Table I), small, tiny (default small)",
    )
    p.add_argument(
        "--directory", default="searches", help="KerasTuner directory (searches)"
    )
    p.add_argument("--max-trials", type=int, default=None, help="trial limit")
    p.add_argument("--blocks", type=int, default=3, help="N_B, blocks per stack (3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh instead of resuming"
    )
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress")
    p.add_argument(
        "--width-rule",
        choices=["formula", "table1"],
        default="formula",
        help="N_F by the Table I formula (default) or as Table I prints it "
        "(audio without the channel factor, about 3x wider)",
    )
    p.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log every trial for TensorBoard (scalars per epoch, HParams) in "
        "DIRECTORY/<search>/tensorboard (default: on)",
    )


def add_parser(subparsers) -> None:
    """Adds `search` (growth, pruning) and `analyze` to the `spzoo` command."""
    search = subparsers.add_parser(
        "search",
        help="run or resume a growth / pruning NAS with KerasTuner",
        description=(
            "Runs a neural architecture search with KerasTuner. Run the same "
            "command again after an interruption to resume; set KerasTuner's "
            "KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT "
            "to share one search between a chief and workers."
        ),
    )
    kinds = search.add_subparsers(dest="kind", required=True)

    p = kinds.add_parser("growth", help="aging-evolution growth NAS (Algorithm 1)")
    _common(p)
    p.add_argument("--population", type=int, default=100, help="n(P) (100)")
    p.add_argument("--sample", type=int, default=25, help="n(S) (25)")
    p.add_argument("--iterations", type=int, default=500, help="n_iter (500)")
    p.add_argument("--max-ops", type=int, default=100, help="n_op_max (100)")
    p.add_argument("--initial-growth", type=int, default=10, help="N_G_init (10)")
    p.add_argument("--search-blocks", type=int, default=1, help="N_B_search (1)")
    p.add_argument("--search-growth", type=int, default=1, help="N_G_search (1)")
    p.add_argument(
        "--inherit-weights",
        action="store_true",
        help="a child starts from its parent's trained weights (function-"
        "preserving where the growth step allows) and trains a shorter schedule",
    )
    p.add_argument(
        "--inherit-fraction",
        type=float,
        default=None,
        help="with --inherit-weights: share of the steps a child trains "
        f"(default {DEFAULT_INHERIT_FRACTION})",
    )
    p.set_defaults(func=growth_command)

    p = kinds.add_parser("pruning", help="L2-importance pruning NAS of a ResNet")
    _common(p)
    p.add_argument("--iterations", type=int, default=1000, help="n_iter (1000)")
    p.add_argument("--remove", type=int, default=1, help="N_R, neurons per iteration")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.02,
        help="delta_alpha_max, largest accuracy drop (0.02 = 2 points)",
    )
    p.add_argument(
        "--importance",
        choices=["l2", "l2_fan_in"],
        default="l2",
        help="neuron importance: the paper's mean squared weight, or the same "
        "times the layer's fan-in (removes its bias against wide layers)",
    )
    p.add_argument(
        "--scope",
        choices=["inner", "all"],
        default="inner",
        help="which neurons may go: each block's inner neurons (default, removed "
        "physically) or those of every prunable neuron layer (also the first "
        "Ops', the reductions' and the head's, masked)",
    )
    p.set_defaults(func=pruning_command)

    p = kinds.add_parser("nhn", help="NHN pipeline: macro search, DNP, LDS")
    p.add_argument("--dataset", required=True, help="image dataset")
    p.add_argument(
        "--budget", choices=["medium", "small", "short", "tiny"], default="small"
    )
    p.add_argument("--directory", default="searches", help="run directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="start afresh")
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress")
    p.add_argument(
        "--macro",
        choices=["random", "supernet", "enas"],
        default="random",
        help="layer-hierarchy search: random candidates each trained (default), "
        "the same ranked on a weight-shared supernet, or ENAS (an LSTM "
        "controller trained with REINFORCE on the shared weights)",
    )
    p.add_argument(
        "--macro-supernet",
        action="store_true",
        help="deprecated: --macro supernet",
    )
    p.add_argument(
        "--final-recipe",
        choices=["paper", "base"],
        default="paper",
        help="final training: the paper's (cutout, dropout) or the base one "
        "(none; better for tiny networks trained a few epochs)",
    )
    p.add_argument(
        "--direction-rule",
        choices=["sampled", "threshold"],
        default="sampled",
        help="LDS directions: drawn in proportion to their kernels' standard "
        "deviation (default) or the highest standard deviations (the paper's "
        "thresholds)",
    )
    p.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log the random macro search's trials for TensorBoard (scalars "
        "per epoch, HParams) in DIRECTORY/nhn/macro_search/tensorboard "
        "(default: on)",
    )
    p.set_defaults(func=nhn_command)

    p = subparsers.add_parser(
        "analyze",
        help="network statistics (Figs. 10-12) of finished searches",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a --directory of `spzoo search` or its project")
    p.add_argument("--output-dir", default=None, help="default RUN_DIR/analysis")
    p.add_argument(
        "--top", type=int, default=10, help="top-performing growth networks (10)"
    )
    p.set_defaults(func=analyze_command)
