"""Accuracy against measured MACs of `gated_cnn` across thresholds (issue 4).

Trains the un-gated `cnn_reference` and the gated `gated_cnn` (conv 2 and 3
as inhibition cells with pre-synaptic L0 gates) with the same budget
(epochs, batch size, optimiser, seed), then evaluates the gated model at
each threshold on log-alpha: top-1 accuracy on the eval split and the
expected MACs per example measured on it (`spzoo.metrics.threshold_curve`:
only the channels whose gates are open, in the cells and in the next
layer's input). Writes `bench/results/gated_threshold_curve.md` and `.json`.

    python bench/gated_threshold_curve.py                # Fashion-MNIST, 8 epochs
    python bench/gated_threshold_curve.py --epochs 1 --train-examples 5000
"""

import argparse
import json
import time

import keras
from _common import RESULTS, machine, write_result

import spzoo.data
import spzoo.io
import spzoo.metrics
import spzoo.models

DEFAULT_THRESHOLDS = [None] + [t / 2 for t in range(-6, 17)]
TOLERANCE = 0.005  # accuracy within 0.5 percentage points
MAX_FRACTION = 0.70  # at no more than 70% of the reference MACs


def train(arch, data, info, args):
    """Builds and trains `arch`; returns the model and the seconds taken."""
    keras.utils.set_random_seed(args.seed)
    model = spzoo.models.build(arch, info.input_shape, info.num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = data
    start = time.perf_counter()
    model.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=2, shuffle=True
    )
    return model, time.perf_counter() - start


def report(result: dict) -> str:
    """The markdown table of a run."""
    ref = result["reference"]
    lines = [
        "# Gated CNN: accuracy against measured MACs across thresholds",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Dataset: {result['dataset']} ({result['train_examples']} training, "
        f"{result['eval_examples']} eval examples). Budget, the same for both "
        f"models: {result['budget']}.",
        "",
        f"Reference (`cnn_reference`, plain convolutions): accuracy "
        f"{100 * ref['accuracy']:.2f}%, {ref['macs']:,} MACs per example; "
        f"trained in {ref['train_seconds']:.0f} s.",
        "",
        f"Gated (`gated_cnn`, {result['gated']['cell']}): "
        f"{result['gated']['static_macs']:,} MACs with every gate open; trained "
        f"in {result['gated']['train_seconds']:.0f} s.",
        "",
        spzoo.metrics.format_threshold_table(result["curve"], ref["accuracy"]),
    ]
    lines += [
        "",
        f"MACs fall monotonically as the threshold rises: "
        f"{'yes' if result['monotonic'] else 'NO'}.",
        "",
        result["verdict"],
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="use only the first N training examples",
    )
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=None,
        help="thresholds on log-alpha (default: none, -3..8 by 0.5)",
    )
    args = parser.parse_args(argv)
    thresholds = (
        DEFAULT_THRESHOLDS
        if args.thresholds is None
        else [None] + sorted(args.thresholds)
    )

    info = spzoo.data.get(args.dataset)
    x, y = info.loader("train")
    if args.train_examples:
        x, y = x[: args.train_examples], y[: args.train_examples]
    x_eval, y_eval = info.loader("eval")
    budget = (
        f"{args.epochs} epochs, batch {args.batch_size}, Adam lr "
        f"{args.learning_rate:g}, seed {args.seed}"
    )
    print(f"Machine: {machine()}\nBudget (each model): {budget}", flush=True)

    reference, ref_seconds = train("cnn_reference", (x, y), info, args)
    ref_accuracy = reference.evaluate(x_eval, y_eval, verbose=0, return_dict=True)[
        "accuracy"
    ]
    ref_macs = spzoo.metrics.macs(reference)
    print(
        f"Baseline cnn_reference: accuracy {100 * ref_accuracy:.2f}%, "
        f"{ref_macs:,} MACs",
        flush=True,
    )

    gated, gated_seconds = train("gated_cnn", (x, y), info, args)
    curve = spzoo.metrics.threshold_curve(
        gated, (x_eval, y_eval), thresholds, reference_macs=ref_macs
    )
    macs_in_order = [row["macs"] for row in curve]
    monotonic = all(
        a >= b for a, b in zip(macs_in_order, macs_in_order[1:], strict=False)
    )
    passing = [
        row
        for row in curve
        if row["accuracy"] >= ref_accuracy - TOLERANCE
        and row["macs_fraction"] <= MAX_FRACTION
    ]
    if passing:
        best = min(passing, key=lambda row: row["macs_fraction"])
        verdict = (
            f"Criterion met: at threshold {best['threshold']} the gated "
            f"model reaches {100 * best['accuracy']:.2f}% (reference "
            f"{100 * ref_accuracy:.2f}%, within 0.5 points) with "
            f"{100 * best['macs_fraction']:.1f}% of the reference MACs (<= 70%)."
        )
    else:
        verdict = (
            "Criterion NOT met: no threshold reaches the reference accuracy "
            "within 0.5 points at <= 70% of its MACs."
        )
    cell = spzoo.models.get_spec("gated_cnn")["cell"]
    result = {
        "machine": machine(),
        "dataset": args.dataset,
        "train_examples": int(len(x)),
        "eval_examples": int(len(x_eval)),
        "budget": budget,
        "reference": {
            "accuracy": ref_accuracy,
            "macs": ref_macs,
            "train_seconds": ref_seconds,
        },
        "gated": {
            "cell": json.dumps(cell),
            "static_macs": spzoo.metrics.macs(gated),
            "train_seconds": gated_seconds,
        },
        "curve": curve,
        "monotonic": monotonic,
        "criterion_met": bool(passing),
        "verdict": verdict,
    }
    text = report(result)
    print(text)
    write_result("gated_threshold_curve.md", text)
    write_result(
        "gated_threshold_curve.json",
        json.dumps(result, indent=2) + "\n",
    )
    spzoo.metrics.plot_threshold_curve(
        curve,
        RESULTS / "gated_threshold_curve.png",
        reference_accuracy=ref_accuracy,
        title=f"gated_cnn on {args.dataset}: accuracy against MACs",
    )
    model_path = RESULTS / f"gated_cnn_{args.dataset}.keras"
    with spzoo.io.atomic_path(model_path) as tmp:
        gated.save(tmp)
    print(
        f"Wrote {RESULTS / 'gated_threshold_curve.md'} and the trained model "
        f"{model_path}"
    )


if __name__ == "__main__":
    main()
