"""Network statistics of finished searches (Lee & Wang, Figs. 10-12).

- Structural organisation (Fig. 10), growth NAS: per stack, the height H
  (the longest path in conv ops from the stack's input to its output: the
  sum of its blocks' heights) and the width W (the most filters at one
  height level, normalised by the stack's channels; the largest over the
  stack's blocks).
- Structural composition (Fig. 11), growth NAS: per stack, the share of
  each op type (1x1, 3x3, 5x5, 7x7) among the stack's conv ops; None ops
  are counted apart.
- Neural composition (Fig. 12), pruning NAS: per stack, the total L2
  importance phi of each neuron type over the total of all (inner) neurons,
  after pruning.

Growth statistics are taken over the top-performing networks (highest
epsilon) of the search's history. `analyze(run_dir)` reads KerasTuner's
own files (`oracle.json`, `trial_*/trial.json`) and the pruning NAS's
per-iteration records, so it also works on a search still running.
"""

import glob
import json
import os

import numpy as np

from spzoo.io import atomic_path, atomic_write_text, read_json
from spzoo.layers.trainable_neuron_layer import NEURON_TYPES
from spzoo.tuners.base import ARCHITECTURE
from spzoo.tuners.growth_space import (
    CONV_OPS,
    height,
    op_counts,
    stack_filters,
    width,
)


def growth_statistics(spec: dict) -> list:
    """Per-stack H, W and op counts of one growth spec.

    Returns:
        One dict per stack: `{"H": int, "W": float, "ops": {op: count}}`.
    """
    stats = []
    for blocks, channels in zip(spec["stacks"], stack_filters(spec), strict=True):
        stats.append(
            {
                "H": sum(height(b) for b in blocks),
                "W": max(width(b, channels) for b in blocks),
                "ops": op_counts(blocks),
            }
        )
    return stats


def _load_json(path):
    return read_json(path, "search file")


def completed_growth_trials(project: str) -> list:
    """`(trial_id, score, spec)` of the completed trials of a growth project."""
    found = []
    for path in glob.glob(os.path.join(project, "trial_*", "trial.json")):
        trial = _load_json(path)
        if trial.get("status") != "COMPLETED" or trial.get("score") is None:
            continue
        values = trial["hyperparameters"]["values"]
        found.append(
            (
                trial["trial_id"],
                float(trial["score"]),
                json.loads(values[ARCHITECTURE]),
            )
        )
    return sorted(found, key=lambda t: t[1], reverse=True)


def summarize_growth(project: str, top: int = 10) -> dict:
    """Mean and std of H, W and op shares per stack over the top networks."""
    trials = completed_growth_trials(project)
    if not trials:
        raise ValueError(f"No completed growth trials under {project!r}.")
    chosen = trials[: max(1, int(top))]
    per_net = [growth_statistics(spec) for _, _, spec in chosen]
    stacks = []
    for s in range(len(per_net[0])):
        heights = [net[s]["H"] for net in per_net]
        widths = [net[s]["W"] for net in per_net]
        counts = {op: sum(net[s]["ops"][op] for net in per_net) for op in op_counts([])}
        conv_total = sum(counts[op] for op in CONV_OPS) or 1
        stacks.append(
            {
                "H_mean": float(np.mean(heights)),
                "H_std": float(np.std(heights)),
                "W_mean": float(np.mean(widths)),
                "W_std": float(np.std(widths)),
                "op_share": {op: counts[op] / conv_total for op in CONV_OPS},
                "none_ops": counts["none"],
                "conv_ops": sum(counts[op] for op in CONV_OPS),
            }
        )
    return {
        "trials": len(trials),
        "top": [t for t, _, _ in chosen],
        "top_epsilon": [s for _, s, _ in chosen],
        "stacks": stacks,
    }


def _stacks(importance_record: dict) -> dict:
    """`{key: stack}` of a pruning record's PLs, stacks numbered from 1; a
    reduction's PL counts with its stack, the head's (scope "all") with the
    last stack."""
    numbered = {
        key: int(key.split("_")[0].removeprefix("stack"))
        for key in importance_record
        if key.startswith("stack")
    }
    last = max(numbered.values())
    return {key: numbered.get(key, last) for key in importance_record}


def importance_shares(importance_record: dict) -> dict:
    """Share of the total phi per neuron type, per stack (Fig. 12).

    Args:
        importance_record: `{prefix: {"phi": [...], "types": [...]}}`.

    Returns:
        `{stack: {type: share}}` with stacks numbered from 1 (a reduction's
        and the head's PL count with the stack they follow).
    """
    totals: dict = {}
    for prefix, stack in _stacks(importance_record).items():
        entry = importance_record[prefix]
        sums = totals.setdefault(stack, dict.fromkeys(NEURON_TYPES, 0.0))
        for phi, kind in zip(entry["phi"], entry["types"], strict=True):
            sums[kind] += phi
    return {
        stack: {
            kind: value / (sum(sums.values()) or 1.0) for kind, value in sums.items()
        }
        for stack, sums in sorted(totals.items())
    }


def summarize_pruning(project: str) -> dict:
    """Importance shares and neuron counts per type, start and final network."""
    state = _load_json(os.path.join(project, "oracle.json"))
    chain = state.get("chain") or []
    if not chain:
        raise ValueError(f"No completed pruning iteration under {project!r}.")
    records = [
        _load_json(os.path.join(project, f"trial_{t}", "pruning.json")) for t in chain
    ]

    def composition(record):
        by_stack = {}
        for prefix, stack in _stacks(record["importance"]).items():
            entry = record["importance"][prefix]
            counts = by_stack.setdefault(stack, dict.fromkeys(NEURON_TYPES, 0))
            masked = prefix.endswith("_neuron")  # scope "all": masked PLs
            for phi, kind in zip(entry["phi"], entry["types"], strict=True):
                if not (masked and phi == 0):  # a masked, removed neuron
                    counts[kind] += 1
        return dict(sorted(by_stack.items()))

    return {
        "stop_reason": state.get("stop_reason"),
        "iterations": [
            {
                "iteration": r["iteration"],
                "val_accuracy": r["val_accuracy"],
                "params": r["params"],
                "neurons": r["neurons"],
            }
            for r in records
        ],
        "start": {
            "shares": importance_shares(records[0]["importance"]),
            "counts": composition(records[0]),
        },
        "final": {
            "shares": importance_shares(records[-1]["importance"]),
            "counts": composition(records[-1]),
        },
    }


def growth_tables(summary: dict) -> str:
    """Markdown tables of Figs. 10 and 11."""
    lines = [
        f"Top {len(summary['top'])} of {summary['trials']} growth networks by epsilon "
        f"(trials {', '.join(summary['top'])}).",
        "",
        "Fig. 10, structural organisation (mean +- std):",
        "",
        "| stack | H | W |",
        "| --- | --- | --- |",
    ]
    for s, st in enumerate(summary["stacks"], start=1):
        lines.append(
            f"| {s} | {st['H_mean']:.2f} +- {st['H_std']:.2f} | "
            f"{st['W_mean']:.2f} +- {st['W_std']:.2f} |"
        )
    lines += [
        "",
        "Fig. 11, structural composition (share of conv ops):",
        "",
        "| stack | " + " | ".join(CONV_OPS) + " | conv ops | None ops |",
        "| --- | " + " | ".join("---" for _ in CONV_OPS) + " | --- | --- |",
    ]
    for s, st in enumerate(summary["stacks"], start=1):
        shares = " | ".join(f"{100 * st['op_share'][op]:.1f}%" for op in CONV_OPS)
        lines.append(f"| {s} | {shares} | {st['conv_ops']} | {st['none_ops']} |")
    return "\n".join(lines) + "\n"


def pruning_tables(summary: dict) -> str:
    """Markdown tables of Fig. 12 and of the pruning iterations."""
    first, last = summary["iterations"][0], summary["iterations"][-1]
    lines = [
        f"Pruning: {len(summary['iterations']) - 1} iterations, stopped: "
        f"{summary['stop_reason']}.",
        f"Accuracy {first['val_accuracy']:.4f} -> {last['val_accuracy']:.4f}, "
        f"params {first['params']:,} -> {last['params']:,}, inner neurons "
        f"{first['neurons']} -> {last['neurons']}.",
        "",
        "Fig. 12, neural composition (share of total L2 importance per stack; "
        "neuron counts in brackets):",
        "",
        "| stack | network | " + " | ".join(NEURON_TYPES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in NEURON_TYPES) + " |",
    ]
    for which in ("start", "final"):
        part = summary[which]
        for stack, shares in part["shares"].items():
            counts = part["counts"][int(stack)]
            cells = " | ".join(
                f"{100 * shares[k]:.1f}% ({counts[k]})" for k in NEURON_TYPES
            )
            lines.append(f"| {stack} | {which} | {cells} |")
    lines += [
        "",
        "| iteration | val_accuracy | params | inner neurons |",
        "| --- | --- | --- | --- |",
    ]
    for it in summary["iterations"]:
        lines.append(
            f"| {it['iteration']} | {it['val_accuracy']:.4f} | {it['params']:,} | "
            f"{it['neurons']} |"
        )
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def plot_growth(summary: dict, output_dir: str) -> list:
    """Fig. 10 (H and W per stack) and Fig. 11 (op shares) as PNGs."""
    plt = _plt()
    stacks = summary["stacks"]
    x = np.arange(1, len(stacks) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, label in ((axes[0], "H", "height H"), (axes[1], "W", "width W")):
        ax.bar(
            x,
            [s[f"{key}_mean"] for s in stacks],
            yerr=[s[f"{key}_std"] for s in stacks],
            capsize=4,
            color="#4c72b0",
        )
        ax.set_xticks(x, [f"stack {i}" for i in x])
        ax.set_ylabel(label)
    fig.suptitle(f"Structural organisation, top {len(summary['top'])} growth networks")
    path10 = os.path.join(output_dir, "fig10_height_width.png")
    _save(fig, path10)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bottom = np.zeros(len(stacks))
    for op in CONV_OPS:
        share = np.array([100 * s["op_share"][op] for s in stacks])
        ax.bar(x, share, bottom=bottom, label=f"{op} Op")
        bottom += share
    ax.set_xticks(x, [f"stack {i}" for i in x])
    ax.set_ylabel("share of conv ops (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title("Structural composition")
    path11 = os.path.join(output_dir, "fig11_op_shares.png")
    _save(fig, path11)
    plt.close(fig)
    return [path10, path11]


def plot_pruning(summary: dict, output_dir: str) -> list:
    """Fig. 12 (importance share per neuron type) and the pruning curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    shares = summary["final"]["shares"]
    stacks = list(shares)
    x = np.arange(len(stacks))
    for i, kind in enumerate(NEURON_TYPES):
        ax.bar(
            x + (i - 1) * 0.27,
            [100 * shares[s][kind] for s in stacks],
            width=0.27,
            label="conventional (ReLU)" if kind == "relu" else kind,
        )
    ax.set_xticks(x, [f"stack {s}" for s in stacks])
    ax.set_ylabel("share of total importance (%)")
    ax.axhline(100 / 3, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title("Neural composition after pruning")
    path12 = os.path.join(output_dir, "fig12_importance_shares.png")
    _save(fig, path12)
    plt.close(fig)

    its = summary["iterations"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([i["iteration"] for i in its], [i["val_accuracy"] for i in its], "o-")
    ax.set_xlabel("pruning iteration")
    ax.set_ylabel("eval accuracy")
    twin = ax.twinx()
    twin.plot(
        [i["iteration"] for i in its], [i["params"] for i in its], "s--", color="C1"
    )
    twin.set_ylabel("parameters", color="C1")
    ax.set_title("Pruning NAS")
    path_curve = os.path.join(output_dir, "pruning_curve.png")
    _save(fig, path_curve)
    plt.close(fig)
    return [path12, path_curve]


def _projects(run_dir: str) -> dict:
    """`{"growth": path, "pruning": path}` of the projects found in `run_dir`."""
    found = {}
    for kind in ("growth", "pruning"):
        if os.path.isfile(os.path.join(run_dir, kind, "oracle.json")):
            found[kind] = os.path.join(run_dir, kind)
    if not found and os.path.isfile(os.path.join(run_dir, "oracle.json")):
        state = _load_json(os.path.join(run_dir, "oracle.json"))
        found["pruning" if "chain" in state else "growth"] = run_dir
    return found


def analyze(run_dir: str, output_dir: str | None = None, top: int = 10) -> list:
    """Writes the statistics of the searches in `run_dir` as tables and PNGs.

    Args:
        run_dir: A `--directory` of `spzoo search` (holding `growth/` and/or
            `pruning/`) or one of those project directories.
        output_dir: Where to write (default `<run_dir>/analysis`).
        top: How many top growth networks (by epsilon) to summarise.

    Returns:
        The paths written: `statistics.md`, `statistics.json` and the PNGs.
    """
    projects = _projects(run_dir)
    if not projects:
        raise ValueError(
            f"`run_dir` {run_dir!r} holds no growth or pruning search "
            "(expected growth/oracle.json or pruning/oracle.json)."
        )
    output_dir = output_dir or os.path.join(run_dir, "analysis")
    os.makedirs(output_dir, exist_ok=True)
    written, text, data = [], [f"# Network statistics of {run_dir}\n"], {}
    if "growth" in projects:
        summary = summarize_growth(projects["growth"], top)
        data["growth"] = summary
        text += ["## Growth NAS\n", growth_tables(summary)]
        written += plot_growth(summary, output_dir)
    if "pruning" in projects:
        summary = summarize_pruning(projects["pruning"])
        data["pruning"] = summary
        text += ["## Pruning NAS\n", pruning_tables(summary)]
        written += plot_pruning(summary, output_dir)
    md = os.path.join(output_dir, "statistics.md")
    atomic_write_text(md, "\n".join(text))
    js = os.path.join(output_dir, "statistics.json")
    atomic_write_text(js, json.dumps(data, indent=2) + "\n")
    return [md, js] + written
