"""`spzoo zoo site OUT`: the zoo as a static web site (`spzoo.zoo.site`).

```
spzoo zoo site site/ [--filter 'gated*'] [--examples-per-class 2] [--files onnx|all]
python -m http.server -d site/     # then open http://127.0.0.1:8000/
```
"""

from spzoo.cli_types import NAME_WIDTH, add_name_filter, positive_int
from spzoo.zoo.site import build_site

FILE_CHOICES = ("onnx", "all")


def site_command(args) -> int:
    summary = build_site(
        args.out,
        filter=args.filter,
        examples_per_class=args.examples_per_class,
        files=args.files,
        onnxruntime_web=args.onnxruntime_web,
    )
    for model in summary["models"]:
        demo = "demo with threshold slider" if model["gated"] else "demo"
        print(
            f"{model['name']:<{NAME_WIDTH}} {model['examples']:>3} examples  "
            f"{len(model['copied'])} files copied  {demo}"
        )
    print(
        f"site written to {summary['out']} ({len(summary['models'])} models, "
        f"{summary['pages']} pages, {summary['bytes'] / 1e6:.1f} MB; "
        f"onnxruntime-web {summary['onnxruntime_web']})"
    )
    print(f"serve it: python -m http.server -d {summary['out']}")
    return 0


def add_parser(zoo_subparsers) -> None:
    """Adds `zoo site` to the `spzoo zoo` sub-command parsers."""
    q = zoo_subparsers.add_parser(
        "site",
        help="write a static web site of the zoo (cards, curves, in-browser demo)",
    )
    q.add_argument("out", help="output folder (created; a previous site is replaced)")
    add_name_filter(q)
    q.add_argument(
        "--examples-per-class",
        type=positive_int,
        default=2,
        help="evaluation examples bundled per class for the demo (default 2)",
    )
    q.add_argument(
        "--files",
        choices=FILE_CHOICES,
        default="onnx",
        help="model files copied into the site: onnx (the demo's; default) or all; "
        "others link to their URL when the manifest has one",
    )
    q.add_argument(
        "--onnxruntime-web",
        default=None,
        metavar="DIR",
        help="onnxruntime-web's dist/ folder (default $SPZOO_ONNXRUNTIME_WEB, "
        "else node_modules/onnxruntime-web/dist of the checkout; setup.sh "
        "installs it with npm)",
    )
    q.set_defaults(func=site_command, tensorflow=False)
