"""The HTML pages of the zoo site: the index and one page per model.

Every number comes from the manifest entry (through `spzoo.zoo.card` for
the card); the pages hold no script except the model page's demo
(`site_assets/demo.js`), configured by a JSON block that this module
writes.
"""

import html
import json

from spzoo.zoo.card import render as render_card
from spzoo.zoo.site_markdown import to_html
from spzoo.zoo.text import percent, size_text, threshold_text

STYLE = "style.css"
DEMO = "demo.js"


def _e(value) -> str:
    return html.escape(str(value))


def _document(title: str, body: str, root: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{_e(title)}</title>\n"
        f"<link rel='stylesheet' href='{root}{STYLE}'>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _formats_cell(entry: dict) -> str:
    items = []
    for format, record in entry["files"].items():
        items.append(
            f"<li><b>{_e(format)}</b> {_e(record['file'])}, "
            f"{size_text(record['size'])}, "
            f"<code class='sha'>sha256 {_e(record['sha256'])}</code></li>"
        )
    return "<ul class='formats'>" + "".join(items) + "</ul>"


def _accuracy_cell(entry: dict) -> str:
    parts = [
        f"{_e(format)} {percent(record.get('accuracy'))}"
        for format, record in entry["files"].items()
    ]
    return "<br>".join(parts)


def index_page(entries: list[dict], plot: str, footer: str) -> str:
    """The index: every model's numbers and the zoo's accuracy/MACs plot."""
    rows = []
    for entry in entries:
        gated = "yes" if entry.get("threshold") else "no"
        rows.append(
            "<tr>"
            f"<td><a href='models/{_e(entry['name'])}.html'>{_e(entry['name'])}</a>"
            "</td>"
            f"<td>{_e(entry['dataset'])}</td>"
            f"<td class='num'>{percent(entry['accuracy'])}</td>"
            f"<td class='num'>{_accuracy_cell(entry)}</td>"
            f"<td class='num'>{entry['params']:,}</td>"
            f"<td class='num'>{entry['macs']:,}</td>"
            f"<td>{gated}</td>"
            "</tr>"
            f"<tr class='files'><td colspan='7'>{_formats_cell(entry)}</td></tr>"
        )
    body = (
        "<header><h1>spzoo model zoo</h1>"
        f"<p>{len(entries)} trained models. Accuracy is top-1 on each model's "
        "evaluation split, measured from every shipped file; MACs per example "
        "with every channel computed. Open a model for its card, threshold "
        "curve, downloads and an in-browser demo (ONNX Runtime Web); below "
        "each model, its files with size and sha256.</p>"
        "</header>\n<main>\n"
        "<table id='models'>\n<thead><tr><th>model</th><th>dataset</th>"
        "<th>accuracy</th><th>accuracy per format</th><th>params</th>"
        "<th>MACs</th><th>gated</th></tr>"
        "</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
        f"<h2>Accuracy against MACs</h2>\n<img id='plot' src='{_e(plot)}' "
        "alt='accuracy against MACs of every zoo model'>\n"
        f"</main>\n<footer>{footer}</footer>"
    )
    return _document("spzoo model zoo", body, "")


def _downloads(entry: dict, links: dict) -> str:
    rows = []
    for format, record in entry["files"].items():
        files = [record] + ([record["sidecar"]] if "sidecar" in record else [])
        for item in files:
            href = links.get(item["file"])
            where = (
                f"<a href='{_e(href)}' download>{_e(item['file'])}</a>"
                if href
                else f"{_e(item['file'])} (not in this site: <code>spzoo zoo fetch "
                f"{_e(entry['name'])} --format {_e(format)}</code>)"
            )
            rows.append(
                f"<tr><td>{_e(format)}</td><td>{where}</td>"
                f"<td class='num'>{size_text(item['size'])}</td>"
                f"<td><code class='sha'>{_e(item['sha256'])}</code></td></tr>"
            )
    return (
        "<table id='downloads'><thead><tr><th>format</th><th>file</th>"
        "<th>size</th><th>sha256</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _demo(entry: dict, config: dict) -> str:
    curve = config.get("curve") or []
    slider = ""
    if curve:
        slider = (
            "<div class='slider'><label for='threshold'>Threshold on the gates' "
            "log-alpha (the points of the manifest's curve):</label> "
            f"<input type='range' id='threshold' min='0' max='{len(curve) - 1}' "
            "step='1' value='0'> <span id='threshold-value'></span>"
            "<p id='macs'></p></div>"
        )
    note = ""
    if config.get("dropped_initializers"):
        names = ", ".join(
            f"<code>{_e(n)}</code>" for n in config["dropped_initializers"]
        )
        note = (
            f"<p class='note'>The demo runs <code>{_e(config['onnx'][3:])}</code>, "
            f"a copy of the ONNX file without the default value it stores for "
            f"its input {names} (ONNX Runtime Web accepts only inputs without "
            "one); graph and weights are unchanged. The download below is the "
            "manifest's file.</p>"
        )
    upload = ""
    if config.get("upload"):
        upload = (
            "<p><label for='upload'>or your own image:</label> "
            "<input type='file' id='upload' accept='image/*'><br>"
            "<small>read as <code>spzoo infer FILE</code> reads one: greyscale "
            "(ITU-R 601 luma) or RGB as the model takes, nearest-neighbour "
            "resize to "
            f"{'x'.join(map(str, config['shape'][:2]))}, pixels / 255, then the "
            "dataset's mean and std; the browser may pick other source pixels "
            "than Pillow when it resizes.</small></p>"
        )
    text = json.dumps(config, indent=1).replace("</", "<\\/")
    return (
        "<section id='demo'><h2>Try it in the browser</h2>"
        "<p>Runs the ONNX file with ONNX Runtime Web (WebAssembly, one thread) "
        "on bundled evaluation examples of "
        f"{_e(entry['dataset'])} ({_e(entry['eval_split'])} split). Latency: "
        f"median of the runs shown, in this browser.</p>{note}"
        "<p id='status' data-state='loading'>loading the model...</p>"
        "<div class='demo'><canvas id='example-image' width='112' height='112'>"
        "</canvas><div><label for='example'>Example:</label> "
        "<select id='example'></select>"
        f"{upload}"
        f"{slider}"
        "<p id='prediction'></p><ol id='top'></ol><p id='latency'></p>"
        "</div></div>"
        "<pre id='selftest' hidden></pre>"
        f"<script type='application/json' id='model-config'>{text}</script>"
        f"<script type='module' src='../{DEMO}'></script></section>"
    )


def model_page(entry: dict, plot: str, links: dict, config: dict | None, footer):
    """A model's page: summary, demo (when it has an ONNX file), plot,
    downloads and its card (`spzoo.zoo.card`)."""
    shape = "x".join(map(str, entry["input"]["shape"]))
    threshold = entry.get("threshold")
    rows = [
        ("dataset", f"{entry['dataset']} ({entry['eval_split']} split scored)"),
        ("accuracy", percent(entry["accuracy"])),
        ("params", f"{entry['params']:,}"),
        ("MACs", f"{entry['macs']:,} per example (every channel computed)"),
        ("input", f"{shape} {entry['input']['dtype']}"),
        ("classes", ", ".join(entry["classes"])),
        ("recipe", entry["recipe"]["command"]),
    ]
    if threshold:
        lo, hi = threshold["range"]
        rows.append(
            (
                "threshold",
                f"default {threshold_text(threshold['default'])}, "
                f"range [{lo:g}, {hi:g}]",
            )
        )
    summary = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    demo = (
        _demo(entry, config)
        if config
        else ("<section id='demo'><p>No ONNX file: no in-browser demo.</p></section>")
    )
    body = (
        "<nav><a href='../index.html'>&larr; all models</a></nav>\n"
        f"<header><h1>{_e(entry['name'])}</h1></header>\n<main>\n"
        f"<table id='summary'>{summary}</table>\n{demo}\n"
        "<h2>Accuracy against MACs</h2>"
        f"<img id='plot' src='{_e(plot)}' alt='accuracy against MACs, "
        f"{_e(entry['name'])} among the zoo'>\n"
        f"<h2>Downloads</h2>\n{_downloads(entry, links)}\n"
        f"<section id='card'>{to_html(render_card(entry), heading_offset=1)}"
        f"</section>\n</main>\n<footer>{footer}</footer>"
    )
    return _document(f"{entry['name']} - spzoo model zoo", body, "../")
