"""`spzoo data list` and `spzoo data show NAME`."""

import argparse
import json
import textwrap

from spzoo.data.registry import get, list_datasets, load
from spzoo.data.scaling import table1_scale


def _status(info) -> str:
    missing = info.missing()
    return "ready" if missing is None else f"missing: {missing}"


def _sizes(info) -> str:
    if not info.sizes:
        return "your copy"
    return f"{info.sizes['train']}/{info.sizes['eval']}"


def _record(info) -> dict:
    """The `data list --json` record of a dataset."""
    missing = info.missing()
    return {
        "name": info.name,
        "modality": info.modality,
        "paper": bool(info.paper),
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "sizes": dict(info.sizes) if info.sizes else None,
        "ready": missing is None,
        "status": _status(info),
    }


def list_command(args) -> int:
    """Prints one line per registered dataset: shape, classes, sizes, status.

    Args:
        args: Parsed arguments: `json` prints a JSON list instead.

    Returns:
        Exit status 0.
    """
    if getattr(args, "json", False):
        print(json.dumps([_record(get(name)) for name in list_datasets()], indent=2))
        return 0
    rows = []
    for name in list_datasets():
        info = get(name)
        h, w, c = info.input_shape
        rows.append(
            (
                name,
                info.modality + (" (paper)" if info.paper else ""),
                f"{h}x{w}x{c}",
                str(info.num_classes),
                _sizes(info),
                _status(info),
            )
        )
    header = ("name", "modality", "shape", "classes", "train/eval", "status")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print(
            "  ".join(v.ljust(w) for v, w in zip(row[:5], widths, strict=True)), row[5]
        )
    return 0


def _preprocessing(info) -> str:
    """The dataset's preprocessing config in one line, or where it comes
    from when it needs the data (colour statistics)."""
    from spzoo.data.preprocessing import dataset_preprocessing, describe, is_static

    if not is_static(info):
        return "per-channel mean/std of your copy's training images (computed on use)"
    return describe(dataset_preprocessing(info).as_dict())


def show_command(args) -> int:
    """Prints everything about dataset `args.name`.

    With `args.count`, also loads both splits and prints the number of
    examples and the value range (this reads, and for audio decodes, every
    file).

    Args:
        args: Parsed arguments with `name` and `count`.

    Returns:
        Exit status 0.
    """
    info = get(args.name)
    h, w, c = info.input_shape
    print(f"name:         {info.name}")
    print(
        f"modality:     {info.modality}"
        + (" (a dataset of the paper)" if info.paper else "")
    )
    print(f"input shape:  {h}x{w}x{c}")
    print(f"classes:      {info.num_classes}")
    names = ", ".join(info.class_names)
    print(
        textwrap.fill(
            names,
            88,
            initial_indent="              ",
            subsequent_indent="              ",
        )
    )
    print(f"train/eval:   {_sizes(info)}")
    print(
        textwrap.fill(
            info.description,
            88,
            initial_indent="description:  ",
            subsequent_indent="              ",
        )
    )
    print(
        textwrap.fill(
            info.source,
            88,
            initial_indent="source:       ",
            subsequent_indent="              ",
        )
    )
    print(f"pipeline:     {_preprocessing(info)}")
    print(f"status:       {_status(info)}")
    if info.sizes and info.sizes.get("train"):
        scaled = table1_scale(info, "formula")
        print(
            f"Table I rule: N_F = {scaled.filters:.1f} (~{scaled.num_filters}), "
            f"N_S = {scaled.steps:.0f} (~{scaled.num_steps}) relative to CIFAR-10 "
            "(16 filters, 3900 steps); searches apply this N_F"
        )
        printed = table1_scale(info, "table1")
        if printed.filters != scaled.filters:
            # Table I's audio column follows the rule without the channel factor.
            print(
                "              as Table I's audio column (no channel factor): "
                f"N_F = {printed.filters:.1f} (~{printed.num_filters}), "
                "`spzoo search ... --width-rule table1`"
            )
    if getattr(args, "count", False):
        from spzoo.quiet import import_tensorflow

        import_tensorflow()
        for split in ("train", "eval"):
            n, lo, hi = 0, float("inf"), float("-inf")
            for x, _ in load(info.name, split, batch_size=256, shuffle=False):
                n += int(x.shape[0])
                lo, hi = (
                    min(lo, float(x.numpy().min())),
                    max(hi, float(x.numpy().max())),
                )
            print(f"{split + ':':<14}{n} examples, values in [{lo:.3g}, {hi:.3g}]")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `spzoo data {list,show}` on the `spzoo` sub-command parsers.

    Args:
        subparsers: The object `ArgumentParser.add_subparsers()` returned.

    Returns:
        The `data` parser.
    """
    parser = subparsers.add_parser("data", help="list and describe datasets")
    sub = parser.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("list", help="registered datasets with shapes, sizes, status")
    p.add_argument("--json", action="store_true", help="print the datasets as JSON")
    p.set_defaults(func=list_command, tensorflow=False)
    p = sub.add_parser("show", help="one dataset in detail")
    p.add_argument("name", help="dataset name (see `spzoo data list`)")
    p.add_argument(
        "--count",
        action="store_true",
        help="load both splits and count the examples (reads every file)",
    )
    p.set_defaults(func=show_command, tensorflow=False)
    return parser
