"""The zoo site's plot: accuracy against MACs of every model (matplotlib, SVG).

Each model is a point at (MACs, accuracy) from its manifest entry; a gated
model is also a line through its threshold curve (expected MACs, accuracy).
`highlight` draws one model in colour and the others in grey (a model
page); without it every model has its own colour (the index).
"""

from pathlib import Path


def plot_zoo(entries: list[dict], path: str | Path, highlight: str | None = None):
    """Writes the accuracy-against-MACs plot of `entries` to `path` (SVG).

    Args:
        entries: Manifest entries (`name`, `accuracy`, `macs`, `threshold`).
        path: The `.svg` file to write (its folder must exist).
        highlight: A model name to draw in colour over the others in grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, entry in enumerate(entries):
        mine = highlight is None or entry["name"] == highlight
        colour = colours[i % len(colours)] if mine else "#bbbbbb"
        label = entry["name"] if mine else None
        z = 3 if mine else 2
        curve = (entry.get("threshold") or {}).get("curve") or []
        if curve:
            axes.plot(
                [row["macs"] for row in curve],
                [100 * row["accuracy"] for row in curve],
                "o-",
                color=colour,
                markersize=4,
                zorder=z,
                label=f"{label} (threshold curve)" if label else None,
            )
            if mine:
                for row in curve:
                    text = (
                        "none" if row["threshold"] is None else f"{row['threshold']:g}"
                    )
                    axes.annotate(
                        text,
                        (row["macs"], 100 * row["accuracy"]),
                        textcoords="offset points",
                        xytext=(3, 3),
                        fontsize=7,
                        color=colour,
                    )
        axes.plot(
            [entry["macs"]],
            [100 * entry["accuracy"]],
            "s",
            color=colour,
            markersize=7,
            zorder=z,
            label=f"{label} (every channel)" if label and curve else label,
        )
    axes.set_xscale("log")
    axes.set_xlabel("MACs per example (log scale)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title("Accuracy against MACs (zoo manifest)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    try:
        figure.savefig(str(path), format="svg", metadata={"Date": None})
    finally:
        plt.close(figure)
    return Path(path)
