"""`spzoo zoo site OUT`: the zoo as a static web site.

```python
from spzoo.zoo.site import build_site

build_site("site/")          # then: python -m http.server -d site/
```

The site, written into a temporary sibling folder and renamed into place
(`spzoo.io.atomic_path`), so `OUT` is the old site or the new one:

```
index.html                  every model: dataset, accuracy per format, params,
                            MACs, formats with sizes and sha256; zoo.svg
zoo.svg                     accuracy against MACs of the zoo (site_plot)
models/<name>.html          summary, in-browser demo, plot, downloads, card
models/<name>.svg           the same plot with this model highlighted
files/<file>                the model files copied (the ONNX files by default)
examples/<dataset>.json     bundled evaluation examples (site_examples)
vendor/onnxruntime-web/     onnxruntime-web's WASM build, from npm
style.css, demo.js          site_assets/
spzoo-site.json             what was built, from what (marks OUT as a site)
```

Nothing is fetched from elsewhere at run time: the page loads ONNX Runtime
Web from `vendor/`, the model from `files/`, the examples from `examples/`.
onnxruntime-web comes from npm (`package.json`, installed by `setup.sh`
into `node_modules/`); `onnxruntime_web=` or `$SPZOO_ONNXRUNTIME_WEB`
points to another copy of its `dist/` folder.
"""

import json
import os
import shutil
from pathlib import Path

import spzoo
from spzoo import data
from spzoo.io import atomic_path, atomic_write_text
from spzoo.zoo import hub
from spzoo.zoo.download import verify
from spzoo.zoo.manifest import REPOSITORY
from spzoo.zoo.site_examples import bundle
from spzoo.zoo.site_onnx import browser_copy
from spzoo.zoo.site_pages import DEMO, STYLE, index_page, model_page
from spzoo.zoo.site_plot import plot_zoo

FORMAT = "spzoo-site/1"
MARKER = "spzoo-site.json"
ASSETS = Path(__file__).resolve().parent / "site_assets"
ORT_ENV = "SPZOO_ONNXRUNTIME_WEB"
# The WASM build of onnxruntime-web as one ES module, the WebAssembly
# binary and its loader (imported from `wasmPaths`, the vendor folder).
ORT_FILES = (
    "ort.wasm.bundle.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
)
ORT_VENDOR = "vendor/onnxruntime-web"


class SiteError(RuntimeError):
    """The site cannot be built: a missing dependency or file."""

    exit_code = 1


def onnxruntime_web_dir(path: str | Path | None = None) -> Path:
    """onnxruntime-web's `dist/` folder: `path`, else `$SPZOO_ONNXRUNTIME_WEB`,
    else `node_modules/onnxruntime-web/dist` of the source checkout.

    Raises:
        SiteError: The folder lacks the files the site vendors.
    """
    folder = Path(path or os.environ.get(ORT_ENV) or "")
    if not str(folder) or str(folder) == ".":
        folder = REPOSITORY / "node_modules" / "onnxruntime-web" / "dist"
    missing = [name for name in ORT_FILES if not (folder / name).is_file()]
    if missing:
        raise SiteError(
            f"onnxruntime-web not found: {str(folder)!r} lacks {', '.join(missing)}. "
            "Run ./setup.sh (npm install in the checkout), or pass "
            f"--onnxruntime-web / set {ORT_ENV} to its dist/ folder."
        )
    return folder


def _ort_version(folder: Path) -> str:
    try:
        return json.loads((folder.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def check_out(out: str | Path) -> Path:
    """`out` as a path the site may be written to.

    Raises:
        ValueError: `out` is a file, or a folder with other content than a
            previous site (it would be replaced).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"`out` {str(out)!r} is a file; expected a folder for the site."
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(
            f"`out` {str(out)!r} is a folder that is not a spzoo site (no {MARKER}); "
            "expected a new or empty folder, or a previous site to replace."
        )
    return out


def _local_file(name: str, format: str, record: dict, document: dict) -> Path:
    """A verified local copy of a file of the entry (not the extracted
    SavedModel folder: its archive)."""
    path = Path(hub.fetch(name, format=format, manifest=document, progress=True))
    if format != "savedmodel":
        return path
    for folder in (Path(document["_root"]), hub.home() / "models" / name):
        archive = folder / record["file"]
        if archive.is_file():
            verify(archive, record["sha256"], delete=False)
            return archive
    raise SiteError(f"The SavedModel archive of {name!r} is not on disk.")


def _copy_files(entry: dict, formats, document: dict, folder: Path) -> tuple:
    """Copies the entry's files of `formats` into `folder`; returns
    `({file name: link}, [files copied])`, a link for every file the page
    can link to (the copy, else its URL)."""
    links, copied = {}, []
    for format, record in entry["files"].items():
        records = [record] + ([record["sidecar"]] if "sidecar" in record else [])
        if format in formats:
            source = _local_file(entry["name"], format, record, document)
            for item in records:
                shutil.copyfile(source.parent / item["file"], folder / item["file"])
                links[item["file"]] = f"../files/{item['file']}"
                copied.append(item["file"])
            continue
        for item in records:
            url = hub.file_url(item, manifest=document)
            if url:
                links[item["file"]] = url
    return links, copied


def _demo_onnx(entry: dict, folder: Path) -> tuple:
    """`(file, dropped)`: the ONNX file in `folder` the demo runs (the
    manifest's, or a copy `site_onnx.browser_copy` writes) and the inputs
    whose initializer that copy dropped."""
    name = entry["files"]["onnx"]["file"]
    copy = f"{Path(name).stem}.browser.onnx"
    dropped = browser_copy(folder / name, folder / copy)
    return (copy if dropped else name), dropped


def _upload_config(entry: dict) -> dict | None:
    """How the demo turns an uploaded image into the model's input: the
    entry's `input.preprocessing_config`, else its dataset's
    (`spzoo.data.dataset_preprocessing`); None for audio models or when
    neither is known here."""
    config = entry["input"].get("preprocessing_config")
    if config is None:
        try:
            config = data.dataset_preprocessing(entry["dataset"]).as_dict()
        except (ValueError, KeyError, OSError):  # unknown, or its files absent
            return None
    if config.get("kind") != "image":
        return None
    return config


def _demo_config(entry: dict, examples: str, onnx: tuple) -> dict:
    threshold = entry.get("threshold") or {}
    return {
        "upload": _upload_config(entry),
        "name": entry["name"],
        "onnx": f"../files/{onnx[0]}",
        "dropped_initializers": onnx[1],
        "examples": examples,
        "shape": entry["input"]["shape"],
        "classes": entry["classes"],
        "macs": entry["macs"],
        "curve": threshold.get("curve") or [],
    }


def _footer(ort_version: str) -> str:
    return (
        f"Built by spzoo {spzoo.version()} from the zoo manifest with "
        "<code>spzoo zoo site</code>; in-browser inference by ONNX Runtime Web "
        f"{ort_version} (served from this site)."
    )


def _write(folder: Path, entries: list, document: dict, options: dict) -> dict:
    ort = options["ort"]
    for sub in ("models", "files", "examples", ORT_VENDOR):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(ort / name, folder / ORT_VENDOR / name)
    for name in (STYLE, DEMO):
        shutil.copyfile(ASSETS / name, folder / name)
    footer = _footer(options["ort_version"])
    plot_zoo(entries, folder / "zoo.svg")
    (folder / "index.html").write_text(index_page(entries, "zoo.svg", footer))
    bundled, models = {}, []
    for entry in entries:
        name, dataset = entry["name"], entry["dataset"]
        formats = set(entry["files"]) if options["files"] == "all" else {"onnx"}
        links, copied = _copy_files(entry, formats, document, folder / "files")
        config, count = None, 0
        if "onnx" in entry["files"]:
            if dataset not in bundled:
                data = bundle(
                    dataset,
                    entry["eval_split"],
                    entry["classes"],
                    options["examples_per_class"],
                )
                (folder / "examples" / f"{dataset}.json").write_text(json.dumps(data))
                bundled[dataset] = len(data["examples"])
            count = bundled[dataset]
            onnx = _demo_onnx(entry, folder / "files")
            config = _demo_config(entry, f"../examples/{dataset}.json", onnx)
        plot_zoo(entries, folder / "models" / f"{name}.svg", highlight=name)
        page = model_page(entry, f"{name}.svg", links, config, footer)
        (folder / "models" / f"{name}.html").write_text(page)
        models.append(
            {
                "name": name,
                "gated": bool((entry.get("threshold") or {}).get("curve")),
                "examples": count,
                "copied": copied,
            }
        )
    return {"models": models}


def build_site(
    out: str | Path,
    manifest=None,
    filter: str | None = None,
    examples_per_class: int = 2,
    files: str = "onnx",
    onnxruntime_web: str | Path | None = None,
) -> dict:
    """Writes the zoo's static site to `out` (see the module docstring).

    Args:
        out: The site folder: new, empty, or a previous site (replaced).
        manifest: A manifest path or document (default: the zoo's,
            `$SPZOO_ZOO_MANIFEST` or the shipped one).
        filter: A glob on model names (`spzoo.zoo.list_models`).
        examples_per_class: Evaluation examples bundled per class.
        files: `"onnx"`: copy the ONNX files (the demo's); `"all"`: every
            file. Files not copied link to their URL when there is one.
        onnxruntime_web: onnxruntime-web's `dist/` (`onnxruntime_web_dir`).

    Returns:
        `{"out", "models": [{"name", "gated", "examples", "copied"}],
        "pages", "bytes", "onnxruntime_web"}`.

    Raises:
        ValueError: A bad `out`, `files`, `examples_per_class` or a filter
            that matches no model.
        SiteError: onnxruntime-web or a model file is missing.
    """
    if files not in ("onnx", "all"):
        raise ValueError(f"`files` must be 'onnx' or 'all'; received {files!r}.")
    if int(examples_per_class) < 1:
        raise ValueError(
            f"`examples_per_class` must be >= 1; received {examples_per_class!r}."
        )
    out = check_out(out)
    ort = onnxruntime_web_dir(onnxruntime_web)
    document = hub._manifest(manifest)  # or $SPZOO_ZOO_MANIFEST, or the shipped one
    names = hub.list_models(filter, manifest=document)
    if not names:
        raise ValueError(f"`filter` {filter!r} matches no zoo model.")
    entries = [hub.info(name, manifest=document) for name in names]
    options = {
        "ort": ort,
        "ort_version": _ort_version(ort),
        "files": files,
        "examples_per_class": int(examples_per_class),
    }
    with atomic_path(out) as tmp:
        tmp.mkdir()
        result = _write(tmp, entries, document, options)
        marker = {
            "format": FORMAT,
            "spzoo_version": spzoo.version(),
            "onnxruntime_web": options["ort_version"],
            "models": [model["name"] for model in result["models"]],
        }
        atomic_write_text(tmp / MARKER, json.dumps(marker, indent=2))
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        pages = len(list(tmp.rglob("*.html")))
    return {
        "out": str(out),
        "models": result["models"],
        "pages": pages,
        "bytes": size,
        "onnxruntime_web": options["ort_version"],
    }
