"""`spzoo export` and `spzoo infer`: the export sub-commands of the CLI.

```
spzoo export runs/gated_cnn.mnist_5k.keras --format onnx [--threshold T] [--slim]
spzoo infer runs/gated_cnn.mnist_5k.onnx digit.png batch.npy [--threshold T]
spzoo infer gated_cnn.fashion_mnist --dataset fashion_mnist --threshold none \
    --threshold 5
```
"""

import argparse
import sys

from spzoo.export.onnx import DEFAULT_OPSET
from spzoo.export.parity import DEFAULT_ATOL, MIN_EXAMPLES
from spzoo.export.runtime import FORMATS


def export_command(args) -> int:
    from spzoo.export.exporter import default_path, export
    from spzoo.export.parity import ParityError

    output = args.output or default_path(
        args.model, args.format, args.slim, args.threshold
    )
    try:
        report = export(
            args.model,
            output,
            format=args.format,
            dataset=args.dataset,
            examples=args.examples,
            threshold=args.threshold,
            slim=args.slim,
            opset=args.opset,
            atol=args.atol,
            dynamic_slim=args.dynamic_slim,
            channel_multiple=args.channel_multiple,
            engine=args.engine,
        )
    except ParityError as error:
        print(f"spzoo export: {error}", file=sys.stderr)
        print("spzoo export: nothing was written.", file=sys.stderr)
        return 1
    metadata = report.metadata
    print(f"{report.format} written to {report.path}")
    print(
        f"  input {metadata['input']['name']} (batch, "
        f"{', '.join(map(str, metadata['input']['shape']))}) float32, output "
        f"{metadata['output']['name']} (batch, {len(metadata['output']['classes'])})"
    )
    threshold = metadata["threshold"]
    if threshold["input"]:
        default = threshold["default"]
        default = "none (-inf)" if default is None else f"{default:g}"
        print(
            f"  threshold input {threshold['input']!r} (scalar float32): default "
            f"{default}, log-alpha range {threshold['range']}"
        )
    if "slim" in metadata:
        slim = metadata["slim"]
        print(
            f"  slim at threshold {slim['threshold']:g}: channels "
            f"{slim['channels']}, MACs {slim['macs_slim']:,} of "
            f"{slim['macs_full']:,} ({100 * slim['mac_fraction']:.1f}%)"
        )
    for result in report.parity:
        print(f"  {result}")
    return 0


def infer_command(args) -> int:
    from spzoo.export.inputs import MAX_CLIP_SECONDS
    from spzoo.export.runtime import load

    from spzoo.zoo import resolve_artifact

    if args.top < 1:
        raise ValueError(f"`--top` must be >= 1; received {args.top}.")
    if args.repeats < 1:
        raise ValueError(f"`--repeats` must be >= 1; received {args.repeats}.")
    if not 0 < args.clip_seconds <= MAX_CLIP_SECONDS:
        raise ValueError(
            f"`--clip-seconds` must be in (0, {MAX_CLIP_SECONDS:g}] seconds; "
            f"received {args.clip_seconds!r}."
        )
    if not args.inputs and not args.dataset:
        raise ValueError("Give input files, or `--dataset NAME` to score a split.")
    runner = load(resolve_artifact(args.artifact))
    thresholds = args.threshold or [None]
    print(f"{runner.metadata['architecture']} ({runner.format}, {runner.path})")
    if args.dataset:
        _score_dataset(runner, args, thresholds)
    for threshold in thresholds if args.inputs else ():
        _classify_files(runner, args, threshold)
    return 0


def _classify_files(runner, args, threshold) -> None:
    import numpy as np
    from spzoo.export.inputs import read_input

    classes = runner.metadata["output"]["classes"]
    if threshold is not None:
        print(f"at threshold {threshold:g}:")
    for path in args.inputs:
        x = read_input(path, runner.input_shape, args.clip_seconds)
        logits = np.asarray(runner(x, threshold=threshold))
        bad = ~np.isfinite(logits).all(axis=-1)
        if bad.any():
            trained = runner.metadata["input"].get("preprocessing") or "its metadata"
            raise ValueError(
                f"Input {path!r}: the model's outputs are not finite for "
                f"{int(bad.sum())} of {len(x)} example(s) (the first: "
                f"{int(np.argmax(bad))}); its values span [{x.min():.3g}, "
                f"{x.max():.3g}], far from what the model was trained on "
                f"({trained})."
            )
        shifted = logits - logits.max(-1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
        for i, p in enumerate(probs):
            name = path if len(probs) == 1 else f"{path}[{i}]"
            top = np.argsort(-p)[: args.top]
            ranked = ", ".join(f"{classes[k]} {p[k]:.3f}" for k in top)
            print(f"{name}: {ranked}")


def _score_dataset(runner, args, thresholds) -> None:
    from spzoo.export.evaluate import evaluate_thresholds

    from spzoo.zoo import eval_arrays

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"`--limit` must be >= 1; received {args.limit}.")
    x, y = eval_arrays(args.dataset, args.split)
    x, y = x[: args.limit], y[: args.limit]
    rows = evaluate_thresholds(runner, x, y, thresholds, repeats=args.repeats)
    default = runner.metadata.get("threshold", {}).get("default")
    curve = _zoo_curve(args.artifact)
    print(
        f"{args.dataset} {args.split} split, {len(y)} examples; latency: median of "
        f"{args.repeats} calls on 1 example"
    )
    header = f"{'threshold':<22} {'accuracy':>9} {'latency (ms)':>13}"
    print(header + ("   expected MACs (zoo curve)" if curve else ""))
    base = rows[0]["latency_ms"]
    for row in rows:
        t = row["threshold"]
        macs = curve.get(t)
        if t is None:
            t = "none" if default is None else f"file default ({default:g})"
        ratio = "" if row is rows[0] else f"({row['latency_ms'] / base:.2f}x)"
        line = f"{t!s:<22} {100 * row['accuracy']:8.2f}% {row['latency_ms']:13.3f}"
        if curve:
            line += f" {ratio:>8} {'-' if macs is None else f'{macs:,.0f}':>18}"
        elif ratio:
            line += f" {ratio:>8}"
        print(line)


def _zoo_curve(artifact: str) -> dict:
    """`{threshold: expected MACs}` of a zoo model's manifest curve (empty for
    a file or a model without one)."""
    import os

    from spzoo import zoo

    if os.path.exists(artifact):
        return {}
    curve = (zoo.info(artifact).get("threshold") or {}).get("curve", [])
    return {row["threshold"]: row["macs"] for row in curve}


def _threshold(text: str) -> float | None:
    if text.lower() in ("none", "default"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number (log-alpha threshold), got {text!r}"
        ) from None
    if value != value:
        raise argparse.ArgumentTypeError("expected a number, got NaN")
    return value


def add_parser(subparsers) -> None:
    """Adds `export` and `infer` to the `spzoo` sub-command parsers."""
    p = subparsers.add_parser(
        "export",
        help="export a .keras model to ONNX / SavedModel / TFLite, with parity checks",
    )
    p.add_argument("model", help="a .keras file (e.g. from `spzoo train`)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument(
        "--output", default=None, help="target path (default: next to the model)"
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="gated models: the default threshold (with --slim: the fixed one)",
    )
    p.add_argument(
        "--slim",
        action="store_true",
        help="remove the channels that input-independent gates close at the threshold",
    )
    p.add_argument(
        "--channel-multiple",
        type=int,
        default=16,
        help="with --slim: round widths up to this multiple (zero channels); 16 "
        "keeps convolutions on ONNX Runtime's AVX-512 fast path (default 16)",
    )
    p.add_argument(
        "--dynamic-slim",
        action="store_true",
        help="ONNX: keep the threshold input and drop closed channels in the graph",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset the model was trained on, for the parity examples and class "
        "names (default: the training record's or zoo entry's; required without)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "builder", "tf2onnx"),
        default="auto",
        help="ONNX: the builder (ResNet family: blocked kernels, threshold "
        "levels) or tf2onnx (any model, gates masked); auto: the builder when "
        "it supports the model",
    )
    p.add_argument("--examples", type=int, default=MIN_EXAMPLES)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL)
    p.set_defaults(func=export_command)

    p = subparsers.add_parser(
        "infer",
        help="run an exported artifact (or zoo model) on files or a dataset split",
    )
    p.add_argument(
        "artifact",
        help="a .onnx / .tflite file, a SavedModel dir or a zoo model name",
    )
    p.add_argument("inputs", nargs="*", help="image, .npy or audio files")
    p.add_argument(
        "--threshold",
        type=_threshold,
        action="append",
        default=None,
        help="gated models: threshold on log-alpha ('none': the file's default, "
        "no threshold unless the export fixed one); repeat to compare several",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="score accuracy and latency on this dataset's split (`spzoo data list`)",
    )
    p.add_argument("--split", default="eval", help="with --dataset (default: eval)")
    p.add_argument("--limit", type=int, default=None, help="first N examples only")
    p.add_argument(
        "--repeats", type=int, default=100, help="timed calls for the latency"
    )
    p.add_argument("--top", type=int, default=3, help="classes to print")
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=1.0,
        help="audio inputs: clip length of the log-Mel pipeline",
    )
    p.set_defaults(func=infer_command)
