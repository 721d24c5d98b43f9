"""`spzoo export` and `spzoo infer`: the export sub-commands of the CLI.

```
spzoo export runs/gated_cnn.mnist_5k.keras --format onnx [--threshold T] [--slim]
spzoo infer runs/gated_cnn.mnist_5k.onnx digit.png batch.npy [--threshold T]
spzoo infer gated_cnn.fashion_mnist --dataset fashion_mnist --threshold none \
    --threshold 5
```
"""

import argparse
import contextlib
import csv
import json
import os
import sys

import numpy as np

from spzoo import zoo
from spzoo.cli_types import non_negative_int
from spzoo.data.preprocessing import describe, from_dict
from spzoo.export.defaults import (
    CALIBRATION_EXAMPLES,
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    ENGINES,
    FORMATS,
    MIN_EXAMPLES,
    QUANTIZE,
)
from spzoo.export.inputs import MAX_CLIP_SECONDS, expand_inputs, read_input
from spzoo.zoo import eval_arrays, resolve_artifact


def export_command(args) -> int:
    from spzoo.export.exporter import default_path, export
    from spzoo.export.parity import ParityError

    output = args.output or default_path(
        args.model, args.format, args.slim, args.threshold, args.quantize
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
            batch_chunk=args.batch_chunk,
            raw_input=args.raw_input,
            quantize=args.quantize,
            calibration_examples=args.calibration_examples,
        )
    except ParityError as error:
        print(f"spzoo export: {error}", file=sys.stderr)
        print("spzoo export: nothing was written.", file=sys.stderr)
        return 1
    metadata = report.metadata
    print(f"{report.format} written to {report.path}")
    if args.quantize:
        print(
            f"  {args.quantize}: activation ranges calibrated on the first "
            f"{args.calibration_examples} training examples; checked by top-1 "
            "agreement with Keras, not float parity"
        )
    inputs = metadata["input"]
    print(
        f"  input {inputs['name']} (batch, "
        f"{', '.join(map(str, inputs['shape']))}) {inputs['dtype']}, output "
        f"{metadata['output']['name']} (batch, {len(metadata['output']['classes'])})"
    )
    where = " (in the graph)" if inputs["raw"] else ""
    print(f"  preprocessing{where}: {describe(inputs['preprocessing_config'])}")
    threshold = metadata["threshold"]
    if threshold["input"]:
        default = threshold["default"]
        default = "none (-inf)" if default is None else f"{default:g}"
        print(
            f"  threshold input {threshold['input']!r} (scalar float32): default "
            f"{default}, log-alpha range {threshold['range']}"
        )
    chunk = None
    if report.format == "onnx":  # the builder's record is in the file only
        import onnx

        from spzoo.runtime import onnx_metadata

        written = onnx_metadata(onnx.load(str(report.path)), report.path)
        chunk = (written.get("onnx") or {}).get("batch_chunk")
    if chunk:
        print(
            f"  a batch above {chunk} runs in chunks of {chunk} inside the graph "
            "(--batch-chunk 0: the whole batch at once)"
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


OUTPUTS = ("text", "json", "csv")


def infer_command(args) -> int:
    from spzoo.runtime import load  # Keras

    if args.top < 1:
        raise ValueError(f"`--top` must be >= 1; received {args.top}.")
    if args.repeats < 1:
        raise ValueError(f"`--repeats` must be >= 1; received {args.repeats}.")
    if args.batch_size < 1:
        raise ValueError(f"`--batch-size` must be >= 1; received {args.batch_size}.")
    if args.clip_seconds is not None and not 0 < args.clip_seconds <= MAX_CLIP_SECONDS:
        raise ValueError(
            f"`--clip-seconds` must be in (0, {MAX_CLIP_SECONDS:g}] seconds; "
            f"received {args.clip_seconds!r}."
        )
    if not args.inputs and not args.dataset:
        raise ValueError("Give input files, or `--dataset NAME` to score a split.")
    if args.dataset and args.output != "text":
        raise ValueError(
            f"`--output {args.output}` applies to input files; `--dataset` prints "
            "a text table."
        )
    files = expand_inputs(args.inputs)
    providers = args.providers.split(",") if args.providers else None
    runner = load(resolve_artifact(args.artifact), providers=providers)
    inputs = runner.metadata["input"]
    # Files exported before the config existed: the zoo entry's.
    args.preprocessing = inputs.get("preprocessing_config") or _zoo_config(
        args.artifact
    )
    args.raw = bool(inputs.get("raw"))
    thresholds = args.threshold or [None]
    header = f"{runner.metadata['architecture']} ({runner.format}, {runner.path})"
    # Machine-readable output keeps stdout to the records.
    print(header, file=sys.stdout if args.output == "text" else sys.stderr)
    if args.dataset:
        _score_dataset(runner, args, thresholds)
    if files:
        write = _record_writer(args.output, args.top)
        for threshold in thresholds:
            if threshold is not None and args.output == "text":
                print(f"at threshold {threshold:g}:")
            for record in _classify_files(runner, files, args, threshold):
                write(record)
    return 0


def _batches(runner, files, args):
    """Yields `(names, x, files_read)`: batches of up to `--batch-size`
    examples read from `files` (a file holding several examples names each
    `path[i]`), and how many files were read so far."""
    names, parts, count = [], [], 0
    for files_read, path in enumerate(files, 1):
        x = read_input(
            path, runner.input_shape, args.clip_seconds, args.preprocessing, args.raw
        )
        many = len(x) > 1
        for i in range(len(x)):
            names.append(f"{path}[{i}]" if many else str(path))
        parts.append(x)
        count += len(x)
        while count >= args.batch_size:
            batch = np.concatenate(parts)
            yield names[: args.batch_size], batch[: args.batch_size], files_read
            names, parts = names[args.batch_size :], [batch[args.batch_size :]]
            count -= args.batch_size
    if count:
        yield names, np.concatenate(parts), len(files)


def _progress(files, args):
    """A Keras progress bar over the files on stderr, or None: shown when
    `--progress` is given, or (by default) when stderr is a terminal and the
    files span more than one batch."""
    show = args.progress
    if show is None:
        show = sys.stderr.isatty() and len(files) > args.batch_size
    if not show:
        return None
    import keras  # only for a progress bar

    with contextlib.redirect_stdout(sys.stderr):  # Progbar writes to stdout
        return keras.utils.Progbar(len(files), unit_name="file")


def _classify_files(runner, files, args, threshold):
    """Yields one record per example of `files`: its name, the threshold and
    the top `--top` classes with their softmax scores."""
    classes = runner.metadata["output"]["classes"]
    progress = _progress(files, args)
    for names, x, files_read in _batches(runner, files, args):
        logits = np.asarray(runner(x, threshold=threshold))
        bad = ~np.isfinite(logits).all(axis=-1)
        if bad.any():
            trained = runner.metadata["input"].get("preprocessing") or "its metadata"
            first = int(np.argmax(bad))
            raise ValueError(
                f"Input {names[first]!r}: the model's outputs are not finite for "
                f"{int(bad.sum())} of {len(x)} example(s) (the first: "
                f"{first}); its values span [{x.min():.3g}, "
                f"{x.max():.3g}], far from what the model was trained on "
                f"({trained})."
            )
        shifted = logits - logits.max(-1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
        for name, p in zip(names, probs, strict=True):
            top = np.argsort(-p)[: args.top]
            yield {
                "path": name,
                "threshold": threshold,
                "top": [
                    {"index": int(k), "class": classes[k], "score": float(p[k])}
                    for k in top
                ],
            }
        if progress is not None:
            with contextlib.redirect_stdout(sys.stderr):
                progress.update(files_read)


def _record_writer(output: str, top: int):
    """A function printing one inference record as a text line, a JSON line
    or a CSV row (after a header row)."""
    if output == "json":
        return lambda record: print(json.dumps(record), flush=True)
    if output == "text":

        def text(record):
            ranked = ", ".join(f"{t['class']} {t['score']:.3f}" for t in record["top"])
            print(f"{record['path']}: {ranked}")

        return text
    writer = csv.writer(sys.stdout, lineterminator="\n")
    columns = ["path", "threshold"]
    for rank in range(1, top + 1):
        columns += [f"class_{rank}", f"score_{rank}"]
    writer.writerow(columns)

    def row(record):
        t = record["threshold"]
        values = [record["path"], "" if t is None else f"{t:g}"]
        for item in record["top"]:
            values += [item["class"], f"{item['score']:.6f}"]
        writer.writerow(values)

    return row


def _score_dataset(runner, args, thresholds) -> None:
    from spzoo.export.evaluate import evaluate_thresholds  # Keras

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"`--limit` must be >= 1; received {args.limit}.")
    x, y = eval_arrays(args.dataset, args.split)
    x, y = x[: args.limit], y[: args.limit]
    if args.raw:  # a raw-input artifact: the split's images as pixels
        config = from_dict(args.preprocessing)
        if config.kind != "image":
            raise ValueError(
                f"`--dataset` with a raw-input audio artifact: {args.dataset!r} "
                "holds log-Mel images, the artifact takes waveforms; give audio "
                "files."
            )
        x = config.to_pixels(x)
    rows = evaluate_thresholds(runner, x, y, thresholds, repeats=args.repeats)
    default = runner.metadata.get("threshold", {}).get("default")
    curve = _zoo_curve(args.artifact)
    computed = bool((runner.metadata.get("onnx") or {}).get("levels"))
    print(
        f"{args.dataset} {args.split} split, {len(y)} examples; latency: median of "
        f"{args.repeats} calls on 1 example"
    )
    header = f"{'threshold':<22} {'accuracy':>9} {'latency (ms)':>13}"
    # Right edges: ratio at +9, MACs computed +16, the curve's MACs +19 (+26
    # beside MACs computed, whose label is wider).
    width = 25 if computed else 18
    if computed:
        header += f" {'':8} {'MACs computed':>15}"
    if curve:
        label = "expected MACs (zoo curve)"
        header += f" {label:>{width}}" if computed else f"   {label}"
    print(header)
    base = rows[0]["latency_ms"]
    for row in rows:
        t = row["threshold"]
        macs = curve_macs(curve, t)
        level = computed_macs(runner.metadata, t) if computed else 0.0
        if t is None:
            t = "none" if default is None else f"file default ({default:g})"
        ratio = "" if row is rows[0] else f"({row['latency_ms'] / base:.2f}x)"
        line = f"{t!s:<22} {100 * row['accuracy']:8.2f}% {row['latency_ms']:13.3f}"
        line += f" {ratio:>8}"
        if computed:
            line += f" {level:15,.0f}"
        if curve:
            line += f" {'-' if macs is None else f'{macs:,.0f}':>{width}}"
        print(line.rstrip())


def computed_macs(metadata: dict, threshold: float | None) -> float:
    """MACs per example that an ONNX file with threshold levels (the
    builder's `metadata["onnx"]["levels"]`) computes at `threshold`: those of
    the level in force, the last `t_j <= t` after the graph clamps `t` to the
    trained range (None: the file's default threshold)."""
    levels = metadata["onnx"]["levels"]
    gate = metadata.get("threshold") or {}
    if threshold is None:
        threshold = gate.get("default")
    if threshold is None:
        return float(levels[0]["macs"])
    t = np.float32(threshold)
    if gate.get("range"):
        lo, hi = gate["range"]
        t = min(max(t, np.float32(lo)), np.float32(hi))
    in_force = [
        level
        for level in levels
        if level["threshold"] is None or np.float32(level["threshold"]) <= t
    ]
    return float(in_force[-1]["macs"])


def _zoo_config(artifact: str) -> dict | None:
    """The `input.preprocessing_config` of a zoo model's manifest entry
    (None for a file)."""
    if os.path.exists(artifact):
        return None
    return zoo.info(artifact)["input"].get("preprocessing_config")


def _zoo_curve(artifact: str) -> dict:
    """`{threshold: expected MACs}` of a zoo model's manifest curve (empty for
    a file or a model without one)."""
    if os.path.exists(artifact):
        return {}
    curve = (zoo.info(artifact).get("threshold") or {}).get("curve", [])
    return {row["threshold"]: row["macs"] for row in curve}


def curve_macs(curve: dict, threshold: float | None) -> float | None:
    """The expected MACs of `curve` (`{threshold: MACs}`) at `threshold`,
    also when it is typed as the model card prints it (the shortest decimal
    of the same float32, the precision the file compares in); None off the
    curve."""
    if threshold is None:
        return curve.get(None)
    near = [
        m
        for t, m in curve.items()
        if t is not None and np.float32(t) == np.float32(threshold)
    ]
    return near[0] if near else None


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
        choices=ENGINES,
        default="auto",
        help="ONNX: the builder (ResNet family: blocked kernels, threshold "
        "levels) or tf2onnx (any model, gates masked); auto: the builder when "
        "it supports the model",
    )
    p.add_argument(
        "--batch-chunk",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="ONNX builder: run a batch larger than N in chunks of N examples "
        "inside the graph (default 8, the fastest on CPUs here; 0: the whole "
        "batch at once, e.g. for a GPU)",
    )
    p.add_argument(
        "--raw-input",
        action="store_true",
        help="the artifact takes raw uint8 pixels (NHWC), or a float32 waveform "
        "for audio models, and preprocesses them in the graph as the metadata's "
        "preprocessing_config says (ONNX: the tf2onnx engine)",
    )
    p.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default=None,
        help="onnx / tflite: an int8 artifact (ONNX: QDQ static quantization; "
        "TFLite: full integer), calibrated on training examples",
    )
    p.add_argument(
        "--calibration-examples",
        type=int,
        default=CALIBRATION_EXAMPLES,
        help=f"with --quantize: training examples that calibrate the activation "
        f"ranges (default {CALIBRATION_EXAMPLES})",
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
    p.add_argument(
        "inputs",
        nargs="*",
        help="image, .npy or audio files, folders (every such file below them) "
        "or glob patterns (quoted, e.g. 'shots/*.png')",
    )
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
        "--batch-size",
        type=int,
        default=32,
        help="input files: examples per runtime call (default 32)",
    )
    p.add_argument(
        "--output",
        choices=OUTPUTS,
        default="text",
        help="text lines, JSON lines or CSV rows: one record per input example "
        "(path, threshold, top classes and scores); json/csv keep stdout to "
        "the records",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal and "
        "the files span more than one batch)",
    )
    p.add_argument(
        "--providers",
        default=None,
        help="ONNX files: comma-separated ONNX Runtime execution providers in "
        "order of preference, e.g. cuda,cpu or TensorrtExecutionProvider "
        "(default: cpu)",
    )
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=None,
        help="audio inputs: clip length of the log-Mel pipeline (default: the "
        "model's preprocessing_config, else 1)",
    )
    p.set_defaults(func=infer_command)
