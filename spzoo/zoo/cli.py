"""`spzoo zoo list|info|card|fetch|site`: the model zoo on the command line.

```
spzoo zoo list [--filter 'gated*'] [--dataset fashion_mnist] [--family F] [--json]
spzoo zoo info gated_cnn.fashion_mnist [--json]
spzoo zoo card gated_cnn.fashion_mnist           # the model card (markdown)
spzoo zoo fetch gated_cnn.fashion_mnist --format onnx [--base-url URL] [--offline]
spzoo zoo fetch gated_cnn.fashion_mnist --format savedmodel   # the extracted folder
spzoo zoo site site/                              # static web site (spzoo.zoo.site_cli)
```
"""

import json

from spzoo.cli_types import NAME_WIDTH, add_name_filter
from spzoo.data.preprocessing import describe
from spzoo.zoo import site_cli
from spzoo.zoo.card import model_card
from spzoo.zoo.hub import fetch, info, list_models
from spzoo.zoo.manifest import FORMATS
from spzoo.zoo.text import size_text


def _threshold_text(threshold: dict | None) -> str:
    if not threshold:
        return "-"
    default = threshold["default"]
    default = "none" if default is None else f"{default:g}"
    lo, hi = threshold["range"]
    return f"default {default}, range [{lo:g}, {hi:g}]"


def _summary(entry: dict) -> dict:
    """The `zoo list --json` record of a manifest entry: the table's columns."""
    return {
        "name": entry["name"],
        "family": entry["family"],
        "arch": entry["arch"],
        "dataset": entry["dataset"],
        "accuracy": entry["accuracy"],
        "params": entry["params"],
        "macs": entry["macs"],
        "gated": entry.get("threshold") is not None,
        "formats": sorted(entry["files"]),
    }


def list_command(args) -> int:
    names = list_models(args.filter, dataset=args.dataset, family=args.family)
    if args.json:
        print(json.dumps([_summary(info(name)) for name in names], indent=2))
        return 0
    if not names:
        print("No zoo model matches.")
        return 0
    print(
        f"{'name':<{NAME_WIDTH}} {'dataset':<22} {'accuracy':>9} {'params':>10} "
        f"{'MACs':>12}  formats"
    )
    for name in names:
        entry = info(name)
        print(
            f"{name:<{NAME_WIDTH}} {entry['dataset']:<22} "
            f"{100 * entry['accuracy']:>8.2f}% "
            f"{entry['params']:>10,} {entry['macs']:>12,}  "
            f"{','.join(entry['files'])}"
        )
    return 0


def _params_text(entry: dict) -> str:
    text = f"{entry['params']:,}"
    if "effective_params" in entry:  # masked (NHN) convolutions
        text += (
            f" stored, {entry['effective_params']:,} in kept kernels "
            "(the NHN paper's count)"
        )
    return text


def info_command(args) -> int:
    entry = info(args.name, base_url=args.base_url)
    if args.json:
        print(json.dumps(entry, indent=2))
        return 0
    shape = "x".join(map(str, entry["input"]["shape"]))
    rows = [
        ("name", entry["name"]),
        ("family", f"{entry['family']} (architecture {entry['arch']})"),
        ("dataset", f"{entry['dataset']} ({entry['eval_split']} split scored)"),
        ("accuracy", f"{100 * entry['accuracy']:.2f}%"),
        ("params", _params_text(entry)),
        ("MACs", f"{entry['macs']:,} per example (every channel computed)"),
        ("input", f"{shape} {entry['input']['dtype']}"),
        ("preprocessing", entry["input"]["preprocessing"]),
        ("as data", describe(entry["input"]["preprocessing_config"])),
        ("classes", ", ".join(entry["classes"])),
        ("threshold", _threshold_text(entry.get("threshold"))),
        ("recipe", entry["recipe"]["command"]),
        ("license", entry["license"]),
    ]
    for key, value in rows:
        print(f"{key + ':':<15}{value}")
    curve = (entry.get("threshold") or {}).get("curve")
    if curve:
        points = ", ".join(
            f"{'none' if row['threshold'] is None else format(row['threshold'], 'g')}"
            f": {100 * row['accuracy']:.2f}% at {row['macs']:,.0f} MACs"
            for row in curve
        )
        print(f"{'curve:':<15}{points}")
    for kind, record in entry["files"].items():
        weights = f", {record['weights']} weights" if "weights" in record else ""
        sidecar = f" + {record['sidecar']['file']}" if "sidecar" in record else ""
        print(
            f"{kind + ':':<15}{record['file']}{sidecar} ({size_text(record['size'])}"
            f"{weights}, sha256 {record['sha256']}) "
            f"{record['url'] or '(shipped; no URL)'}"
        )
    return 0


def card_command(args) -> int:
    print(model_card(args.name), end="")
    return 0


def fetch_command(args) -> int:
    path = fetch(
        args.name,
        format=args.format,
        cache_dir=args.cache_dir,
        base_url=args.base_url,
        offline=True if args.offline else None,
        shipped=not args.no_shipped,
    )
    print(path)
    return 0


def add_parser(subparsers) -> None:
    """Adds `zoo list|info|card|fetch|site` to the `spzoo` sub-command parsers."""
    p = subparsers.add_parser("zoo", help="list, describe and fetch trained models")
    sub = p.add_subparsers(dest="zoo_command", required=True)

    q = sub.add_parser("list", help="every model with accuracy, params and MACs")
    add_name_filter(q)
    q.add_argument("--dataset", default=None)
    q.add_argument("--family", default=None)
    q.add_argument("--json", action="store_true", help="print the models as JSON")
    q.set_defaults(func=list_command, tensorflow=False)

    q = sub.add_parser("info", help="one model's manifest entry")
    q.add_argument("name")
    q.add_argument("--json", action="store_true", help="print the entry as JSON")
    q.add_argument("--base-url", default=None, help="mirror base URL")
    q.set_defaults(func=info_command, tensorflow=False)

    q = sub.add_parser(
        "card", help="one model's card (markdown): use, limits, metrics, provenance"
    )
    q.add_argument("name")
    q.set_defaults(func=card_command, tensorflow=False)

    q = sub.add_parser("fetch", help="a verified local file of a model; prints it")
    q.add_argument("name")
    q.add_argument("--format", default="keras", choices=FORMATS)
    q.add_argument(
        "--cache-dir", default=None, help="zoo home (default $SPZOO_HOME, ~/.spzoo)"
    )
    q.add_argument(
        "--base-url", default=None, help="mirror base URL (default $SPZOO_ZOO_URL)"
    )
    q.add_argument(
        "--offline", action="store_true", help="never download ($SPZOO_OFFLINE=1)"
    )
    q.add_argument(
        "--no-shipped",
        action="store_true",
        help="ignore the copy in saved_models/ (use the cache or download)",
    )
    q.set_defaults(func=fetch_command, tensorflow=False)

    site_cli.add_parser(sub)
