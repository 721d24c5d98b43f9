"""The `spzoo` command line."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import spzoo  # noqa: E402
from spzoo.cli_types import positive_float, shape  # noqa: E402
from spzoo.data import cli as data_cli  # noqa: E402
from spzoo.zoo import cli as zoo_cli  # noqa: E402

# The names of spzoo.training.RECIPES and spzoo.training.distribute.STRATEGIES,
# here without importing Keras.
RECIPE_NAMES = ("fast", "nhn", "paper")
STRATEGY_NAMES = ("default", "mirrored", "multi-worker")


def models_command(args) -> int:
    from spzoo import metrics
    from spzoo.models import build, get_spec, list_architectures

    rows = []
    for name in list_architectures():
        model = build(name, args.input_shape, args.num_classes)
        rows.append(
            {
                "name": name,
                "params": metrics.count_params(model),
                "macs": int(metrics.macs(model)),
                "description": get_spec(name).get("description", ""),
            }
        )
    if args.json:
        document = {
            "input_shape": list(args.input_shape),
            "num_classes": args.num_classes,
            "architectures": rows,
        }
        print(json.dumps(document, indent=2))
        return 0
    h, w, c = args.input_shape
    width = max(len("name"), *(len(row["name"]) for row in rows))
    print(f"Architectures for input {h}x{w}x{c}, {args.num_classes} classes")
    print(f"{'name':<{width}} {'params':>12} {'MACs':>14}  description")
    for row in rows:
        description = row["description"]
        if len(description) > 60:
            description = description[:57] + "..."
        print(
            f"{row['name']:<{width}} {row['params']:>12,} "
            f"{row['macs']:>14,}  {description}"
        )
    return 0


def train_command(args) -> int:
    from spzoo.training import train

    result = train(
        args.arch,
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
        seed=args.seed,
        steps_per_epoch=args.steps_per_epoch,
        initial_lr=args.lr,
        recipe=args.recipe,
        init_from=args.init_from,
        strategy=args.strategy,
        tensorboard=args.tensorboard,
        restart=args.restart,
        mac_budget=args.mac_budget,
        threshold_training=args.threshold_training,
        threshold_training_from=args.threshold_training_from,
    )
    if result["model_path"] is None:
        print(
            f"{result['worker']} finished {result['name']}: eval accuracy "
            f"{result['eval_accuracy']:.4f}; the chief writes the model"
        )
        return 0
    print(
        f"{result['name']}: eval accuracy {result['eval_accuracy']:.4f} "
        f"(loss {result['eval_loss']:.4f}), params {result['params']:,}, "
        f"MACs {result['macs']:,}, trained in {result['train_seconds']} s"
    )
    print(f"model written to {result['model_path']}")
    print(f"metrics written to {os.path.splitext(result['model_path'])[0]}.json")
    if result.get("tensorboard"):
        print(f"TensorBoard logs in {result['tensorboard']}")
    return 0


def calibrate_command(args) -> int:
    from spzoo.training.calibration_job import calibrate

    record = calibrate(
        args.model,
        args.dataset,
        output_dir=args.output_dir,
        examples=args.examples,
        batch_size=args.batch_size,
        seed=args.seed,
        levels=args.levels,
        eval_examples=args.eval_examples,
        keep_above=args.keep_above,
        progress=lambda line: print(line, flush=True),
    )
    calibration = record["recipe"]["batch_norm_calibration"]
    total = len(calibration["levels"]) + 1
    kept = sum(row["statistics"] == "trained" for row in calibration["per_level"])
    kept_text = f" ({kept} kept their trained statistics)" if kept else ""
    print(
        f"{record['name']}: {total - kept} of {total} batch-norm levels "
        f"calibrated on {calibration['examples']} training examples{kept_text}; "
        f"eval accuracy {record['eval_accuracy']:.4f} with no threshold"
    )
    print(f"model written to {record['model_path']}")
    print(f"record written to {os.path.splitext(record['model_path'])[0]}.json")
    return 0


def _levels(text: str) -> list:
    values = _thresholds(text)
    if None in values:
        raise argparse.ArgumentTypeError("levels are numbers, not 'none'")
    return values


def _thresholds(text: str) -> list:
    values = []
    for item in text.split(","):
        item = item.strip()
        if item.lower() == "none":
            values.append(None)
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers or 'none', got {item!r}"
            ) from None
    return values


def sweep_command(args) -> int:
    import keras

    import spzoo.layers  # noqa: F401  (registers every spzoo layer)
    import spzoo.models  # noqa: F401
    import spzoo.nhn.masked  # noqa: F401  (MaskedConv2D of NHN models)
    from spzoo import data, metrics

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"`--limit` must be >= 1; received {args.limit}.")
    model = keras.saving.load_model(args.model)
    eval_ds = data.load(args.dataset, "eval", batch_size=256, shuffle=False)
    if args.limit:
        eval_ds = eval_ds.unbatch().take(args.limit).batch(256)
    reference_accuracy = None
    reference_macs = metrics.macs(model)
    reference_name = f"{model.name} with every channel computed"
    if args.reference:
        reference = keras.saving.load_model(args.reference)
        reference_macs = metrics.macs(reference)
        reference_accuracy = metrics.measure(reference, eval_ds)["accuracy"]
        reference_name = reference.name
    rows = metrics.threshold_curve(
        model, eval_ds, args.thresholds, reference_macs=reference_macs
    )
    print(
        f"{model.name} on {args.dataset} (eval split); MACs relative to "
        f"{reference_name}: {reference_macs:,.0f}"
    )
    if reference_accuracy is not None:
        print(f"reference accuracy {100 * reference_accuracy:.2f}%")
    print(metrics.format_threshold_table(rows, reference_accuracy))
    if args.plot:
        path = metrics.plot_threshold_curve(rows, args.plot, reference_accuracy)
        print(f"plot written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spzoo", description="Bio-inspired networks for Keras 3."
    )
    parser.add_argument(
        "--version", action="version", version=f"spzoo {spzoo.version()}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list architectures with params and MACs")
    p.add_argument(
        "--input-shape",
        type=shape,
        default=(32, 32, 3),
        help="H,W,C of one example (default 32,32,3)",
    )
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument(
        "--json", action="store_true", help="print the architectures as JSON"
    )
    p.set_defaults(func=models_command)

    p = sub.add_parser(
        "train", help="train an architecture with the paper's recipe or a fast one"
    )
    p.add_argument("arch", help="architecture name (see `spzoo models`) or JSON spec")
    p.add_argument(
        "--dataset", required=True, help="dataset name (see `spzoo data list`)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="limit steps per epoch (default: the whole split)",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="initial (fast: peak) learning rate (default: the recipe's)",
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPE_NAMES),
        default="paper",
        help="paper: the papers' SGD recipe (default); fast: warm-up + cosine, "
        "label smoothing, pad-and-crop, mixed bfloat16; nhn: the NHN paper's "
        "cosine recipe (see README)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="ZOO_NAME|FILE.keras",
        help="start from this zoo model's (or .keras file's) weights (the "
        "classifier head too if "
        "the number of classes matches; the architecture must match, see "
        "`spzoo zoo list`)",
    )
    p.add_argument(
        "--mac-budget",
        type=float,
        default=None,
        metavar="FRACTION",
        help="with --init-from a gated model: first close the gates below the "
        "lowest threshold whose MACs are at most FRACTION of the ungated MACs, "
        "then fine-tune (see README, gated models)",
    )
    p.add_argument(
        "--threshold-training",
        type=float,
        default=None,
        metavar="FRACTION",
        help="train a gated model for every threshold down to FRACTION of the "
        "ungated MACs (a random threshold each step); with --init-from it "
        "fine-tunes with batch norm frozen, from scratch batch norm trains and "
        "`spzoo calibrate` follows (see README, gated models)",
    )
    p.add_argument(
        "--threshold-training-from",
        type=int,
        default=None,
        metavar="EPOCH",
        help="first epoch (1-based) of --threshold-training; the epochs before "
        "it train with no threshold so the gates rank the channels (default 1)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGY_NAMES,
        default="default",
        help="tf.distribute strategy: default (one device), mirrored (every "
        "local GPU), multi-worker (the cluster in TF_CONFIG; worker 0 writes "
        "the files); --batch-size is the global batch",
    )
    p.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write TensorBoard logs to OUTPUT_DIR/ARCH.DATASET.tensorboard "
        "(default: on)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the backup of an interrupted run and start over",
    )
    p.set_defaults(func=train_command)

    p = sub.add_parser(
        "calibrate",
        help="batch-norm statistics per threshold level of a trained gated model",
    )
    p.add_argument("model", help="a trained .keras model with block gates")
    p.add_argument("--dataset", required=True, help="the dataset it was trained on")
    p.add_argument(
        "--examples",
        type=int,
        default=5120,
        help="training examples to calibrate on (default 5120)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the examples")
    p.add_argument(
        "--levels",
        type=_levels,
        default=None,
        help="comma-separated thresholds (default: where the model costs 90%%, "
        "80%%, ... 20%% of its ungated MACs)",
    )
    p.add_argument(
        "--eval-examples",
        type=int,
        default=2000,
        help="eval examples for the accuracy per level before and after "
        "(0: skip; default 2000)",
    )
    p.add_argument(
        "--keep-above",
        type=float,
        default=None,
        metavar="F",
        help="no threshold and the levels down to the one where the model costs "
        "at most F of its ungated MACs keep the model's own statistics; only "
        "cheaper levels are calibrated (the F of --threshold-training, which "
        "trained with batch norm frozen)",
    )
    p.add_argument(
        "--output-dir",
        default="runs",
        help="where the calibrated model goes, under the same file name",
    )
    p.set_defaults(func=calibrate_command)

    p = sub.add_parser(
        "sweep", help="accuracy and measured MACs of a gated model per threshold"
    )
    p.add_argument("model", help="a trained .keras model with gated cells")
    p.add_argument("--dataset", required=True, help="dataset name (eval split)")
    p.add_argument(
        "--thresholds",
        type=_thresholds,
        required=True,
        help="comma-separated thresholds on log-alpha, e.g. none,0,2,4,6",
    )
    p.add_argument("--reference", help="un-gated reference .keras model (optional)")
    p.add_argument("--limit", type=int, default=None, help="use the first N examples")
    p.add_argument("--plot", help="write accuracy against MAC fraction as this PNG")
    p.set_defaults(func=sweep_command)

    data_cli.add_parser(sub)
    for add_parser in command_plugins():
        add_parser(sub)
    zoo_cli.add_parser(sub)
    return parser


# The commands of the packages built on the core (`spzoo export`, `spzoo
# infer`, `spzoo search`, ...) are entry points of this group, each an
# `add_parser(subparsers)` function: the core names no module above it.
COMMANDS_GROUP = "spzoo.commands"


def command_plugins() -> list:
    """The `add_parser(subparsers)` functions of the `spzoo.commands` entry
    points of the spzoo distribution, by entry-point name.

    Only spzoo's own metadata is read (a scan of every installed
    distribution costs most of a second on a loaded machine).
    """
    try:
        points = list(
            importlib.metadata.distribution("spzoo").entry_points.select(
                group=COMMANDS_GROUP
            )
        )
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
        points = []
    if not points:
        # pyproject.toml declares them; an install older than that lacks them.
        raise RuntimeError(
            f"spzoo's installed metadata has no {COMMANDS_GROUP!r} entry points "
            "(an install older than pyproject.toml's); reinstall it: "
            "`pip install --no-deps -e .` in the source tree, or `./setup.sh`."
        )
    return [point.load() for point in sorted(points, key=lambda p: p.name)]


# Options whose value may be a negative number written as a word ("-inf"),
# which argparse would take for an option.
_NUMBER_OPTIONS = ("--threshold", "--thresholds", "--levels")
_NEGATIVE_WORD = re.compile(r"-(inf|infinity|nan|\.?\d)[\w.,+-]*", re.IGNORECASE)


def _join_negative_values(argv: list) -> list:
    """`--threshold -inf` -> `--threshold=-inf` (argparse reads "-inf" or
    "-1,2" as an option)."""
    out, i = [], 0
    while i < len(argv):
        if (
            argv[i] in _NUMBER_OPTIONS
            and i + 1 < len(argv)
            and _NEGATIVE_WORD.fullmatch(argv[i + 1])
        ):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


MAX_ERROR_CHARS = 600


def error_line(error: BaseException) -> str:
    """One line for the user: the message, with the file an OSError names."""
    if isinstance(error, OSError) and error.strerror:
        names = [n for n in (error.filename, error.filename2) if n is not None]
        text = error.strerror + "".join(f": {os.fsdecode(n)!r}" for n in names)
    else:
        text = getattr(error, "message", None) or str(error)
    text = " ".join(str(text).split())
    if len(text) > MAX_ERROR_CHARS:  # e.g. Keras quoting a whole layer config
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    if not isinstance(error, ValueError | OSError):
        text = f"{type(error).__name__}: {text}"
    return text or type(error).__name__


def exit_code(error: BaseException) -> int:
    """2 for a bad argument or input (`ValueError`), 1 for a runtime error
    (a failed download, a file that cannot be written, a corrupt state file:
    errors that say `exit_code = 1`, and every other exception)."""
    code = getattr(error, "exit_code", None)
    if code is not None:
        return int(code)
    return 2 if isinstance(error, ValueError) else 1


def main(argv=None) -> int:
    """Runs the `spzoo` command; returns the exit status.

    0 success, 1 a runtime error, 2 a usage error (argparse's own, or a
    `ValueError` naming a bad argument or input), 130 interrupted, 141 when
    stdout was closed early (a pipe into `head`), silently. Errors
    print one line on stderr; `SPZOO_DEBUG=1` shows the traceback instead.
    TensorFlow is imported (without its start-up lines, `spzoo.quiet`) only
    for commands that need it: those whose parser does not set
    `tensorflow=False`.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(_join_negative_values(argv))
    if getattr(args, "num_classes", 2) < 2:
        parser.error("--num-classes must be >= 2")
    try:
        if getattr(args, "tensorflow", True):
            from spzoo.quiet import import_tensorflow

            import_tensorflow()
        return args.func(args)
    except KeyboardInterrupt:
        print("spzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`spzoo zoo list --json | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except Exception as error:
        if os.environ.get("SPZOO_DEBUG", "") not in ("", "0"):
            raise
        print(f"spzoo: error: {error_line(error)}", file=sys.stderr)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
