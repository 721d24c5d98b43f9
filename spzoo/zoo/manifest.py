"""The zoo manifest: one entry per trained model, and its validation.

`saved_models/manifest.json` holds

```
{"format": "spzoo-zoo/1",
 "base_url": "https://..." | null,
 "models": [
   {"name": "gated_cnn.fashion_mnist", "family": "gated_cnn",
    "arch": "gated_cnn", "spec": {...},
    "dataset": "fashion_mnist", "eval_split": "eval",
    "accuracy": 0.9001, "params": 91851, "macs": 7472896,
    "input": {"shape": [28, 28, 1], "dtype": "float32", "layout": "NHWC",
              "preprocessing": "...",
              "preprocessing_config": {"kind": "image", "image_size": [28, 28],
                                       "color_mode": "grayscale",
                                       "pixel_scale": 255.0, "mean": [0.0],
                                       "std": [1.0]}},
    "classes": ["T-shirt/top", ...],
    "threshold": {"default": null, "range": [lo, hi], "curve": [...]} | null,
    "recipe": {"command": "spzoo train ...", "seed": 0},
    "license": "Apache-2.0",
    "files": {"keras": {"file": "x.keras", "size": 123, "sha256": "..."},
              "onnx": {...},
              "savedmodel": {"file": "x.savedmodel.zip", ...},
              "tflite": {"file": "x.tflite", ..., "weights": "float32",
                         "sidecar": {"file": "x.tflite.json", "size": 9,
                                     "sha256": "..."}},
              "onnx-int8": {"file": "x.int8.onnx", ..., "accuracy": 0.9,
                            "quantization": "int8 QDQ ..."},
              "tflite-int8": {"file": "x.int8.tflite", ..., "sidecar": ...}}}]}
```

`onnx-int8` and `tflite-int8` (optional) are int8 copies of the float
files (`spzoo export --quantize int8`), with their accuracy measured from
the file like every other format.

A SavedModel ships as one archive (`.zip` or `.tar.gz`, see
`spzoo.zoo.archive`) that `fetch` extracts; a TFLite file needs its
metadata sidecar (`spzoo.export` writes `<file>.tflite.json`), recorded as
the file's `sidecar` and fetched with it.

`input.preprocessing` is a sentence for people; `input.preprocessing_config`
is the same as data (`spzoo.data.preprocessing`), which `spzoo infer` and
`spzoo export --raw-input` read. An entry written before it existed gets it
from the dataset registry when it is validated (`fill_preprocessing`).

A file's URL is `<base_url>/<file>` (the base URL may be overridden for a
mirror, see `spzoo.zoo.hub.base_url`), or the entry's own `url` if given.

The manifest is package data (`spzoo.saved_models`, only `manifest.json`),
so an installed wheel lists the zoo; a source checkout's
`saved_models/manifest.json` is preferred when it exists (see
`default_manifest`).
"""

import json
import re
from importlib import resources
from pathlib import Path

from spzoo.data import get
from spzoo.data.preprocessing import (
    PreprocessingError,
    dataset_preprocessing,
    from_dict,
    is_static,
)
from spzoo.zoo.archive import ARCHIVE_SUFFIXES
from spzoo.zoo.download import sha256_file

FORMAT = "spzoo-zoo/1"
FORMATS = ("keras", "onnx", "tflite", "savedmodel", "onnx-int8", "tflite-int8")
REQUIRED = {
    "name": str,
    "family": str,
    "arch": str,
    "spec": dict,
    "dataset": str,
    "eval_split": str,
    "accuracy": float,
    "params": int,
    "macs": int,
    "input": dict,
    "classes": list,
    "recipe": dict,
    "license": str,
    "files": dict,
}
REQUIRED_INPUT = ("shape", "dtype", "preprocessing", "preprocessing_config")
REQUIRED_FILE = ("file", "size", "sha256")
WEIGHTS = ("float32", "float16")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = "spzoo.saved_models"
MANIFEST_NAME = "manifest.json"


def default_manifest() -> Path:
    """The shipped manifest: the source checkout's
    `saved_models/manifest.json` when it exists, else the installed package
    data `spzoo.saved_models/manifest.json` (a wheel)."""
    checkout = REPOSITORY / "saved_models" / MANIFEST_NAME
    if checkout.is_file():
        return checkout
    try:
        return Path(str(resources.files(PACKAGE).joinpath(MANIFEST_NAME)))
    except ModuleNotFoundError:  # neither a checkout nor an installed package
        return checkout


DEFAULT_MANIFEST = default_manifest()


class ManifestError(ValueError):
    """A manifest that cannot be read or misses a field."""

    exit_code = 1  # a runtime error for the CLI (the file, not an argument)


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ManifestError(f"Manifest {where}: {message}")


def _check_file(record, where: str, key: str) -> None:
    """Checks a file record: `file` (a plain name), `size`, `sha256`."""
    _check(isinstance(record, dict), where, f"{key!r} must be an object")
    for field in REQUIRED_FILE:
        _check(field in record, where, f"missing field '{key}.{field}'")
    _check(
        isinstance(record["file"], str) and _FILE_NAME.match(record["file"]),
        where,
        f"'{key}.file' must be a plain file name; got {record['file']!r}",
    )
    _check(
        isinstance(record["sha256"], str) and _SHA256.match(record["sha256"]),
        where,
        f"'{key}.sha256' must be 64 lowercase hex digits",
    )
    _check(
        isinstance(record["size"], int) and record["size"] > 0,
        where,
        f"'{key}.size' must be a positive integer",
    )


def file_record(path, **fields) -> dict:
    """The manifest record of a file: `{"file", "size", "sha256", **fields}`."""
    path = Path(path)
    record = {"file": path.name, "size": path.stat().st_size}
    record["sha256"] = sha256_file(path)
    record.update(fields)
    return record


def _check_preprocessing(input: dict, where: str) -> None:
    """Checks `input.preprocessing_config` and that it gives `input.shape`."""
    try:
        config = from_dict(
            input["preprocessing_config"], "'input.preprocessing_config'"
        )
    except PreprocessingError as error:
        raise ManifestError(f"Manifest {where}: {error}") from None
    _check(
        list(config.input_shape) == list(input["shape"]),
        where,
        f"'input.preprocessing_config' gives inputs of shape "
        f"{list(config.input_shape)}; 'input.shape' is {input['shape']}",
    )


def fill_preprocessing(entry: dict) -> dict:
    """Adds `input.preprocessing_config` to an entry written without it,
    from the dataset registry, where the dataset's preprocessing is known
    without its data (colour sets' statistics are recorded by the publisher);
    returns the entry."""
    input = entry.get("input") if isinstance(entry, dict) else None
    if not isinstance(input, dict) or "preprocessing_config" in input:
        return entry
    try:
        info = get(entry.get("dataset"))
    except (ValueError, TypeError):
        return entry  # an unknown dataset: validation names the missing field
    if is_static(info):
        input["preprocessing_config"] = dataset_preprocessing(info).as_dict()
    return entry


def validate_entry(entry: dict, where: str = "entry") -> dict:
    """Checks one model entry; returns it (an entry written before
    `input.preprocessing_config` existed gets it: `fill_preprocessing`).

    Args:
        entry: A dict from the manifest's `models` list.
        where: Its position, for the error message.

    Raises:
        ManifestError: naming the entry and the missing or malformed field.
    """
    _check(isinstance(entry, dict), where, "expected an object")
    where = f"entry {entry.get('name', where)!r}"
    fill_preprocessing(entry)
    for field, kind in REQUIRED.items():
        _check(field in entry, where, f"missing field {field!r}")
        value = entry[field]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        _check(
            ok,
            where,
            f"field {field!r} must be {kind.__name__}; got {type(value).__name__}",
        )
    _check(0.0 <= entry["accuracy"] <= 1.0, where, "`accuracy` must be in [0, 1]")
    _check(
        bool(entry["classes"]) and all(isinstance(c, str) for c in entry["classes"]),
        where,
        "`classes` must be a non-empty list of strings (class names)",
    )
    for field in REQUIRED_INPUT:
        _check(field in entry["input"], where, f"missing field 'input.{field}'")
    _check_preprocessing(entry["input"], where)
    _check("command" in entry["recipe"], where, "missing field 'recipe.command'")
    _check(entry["files"], where, "`files` is empty")
    for format, record in entry["files"].items():
        key = f"files.{format}"
        _check(
            format in FORMATS, where, f"unknown format {format!r}; expected {FORMATS}"
        )
        _check_file(record, where, key)
        if format == "savedmodel":
            _check(
                record["file"].endswith(ARCHIVE_SUFFIXES),
                where,
                f"'{key}.file' must be an archive ({', '.join(ARCHIVE_SUFFIXES)}); "
                f"got {record['file']!r}",
            )
        if format in ("tflite", "tflite-int8"):
            _check("sidecar" in record, where, f"missing field '{key}.sidecar'")
            _check_file(record["sidecar"], where, f"{key}.sidecar")
        if "weights" in record:
            _check(
                record["weights"] in WEIGHTS,
                where,
                f"'{key}.weights' must be one of {WEIGHTS}; got {record['weights']!r}",
            )
    threshold = entry.get("threshold")
    if threshold is not None:
        _check(
            isinstance(threshold, dict) and "default" in threshold,
            where,
            "missing field 'threshold.default'",
        )
        _check("range" in threshold, where, "missing field 'threshold.range'")
    return entry


def validate(document: dict, where: str = "manifest") -> dict:
    """Checks a whole manifest document; returns it unchanged."""
    _check(isinstance(document, dict), where, "expected a JSON object")
    _check(
        document.get("format") == FORMAT,
        where,
        f"`format` must be {FORMAT!r}; got {document.get('format')!r}",
    )
    _check(isinstance(document.get("models"), list), where, "missing list 'models'")
    base = document.get("base_url")
    _check(base is None or isinstance(base, str), where, "`base_url` must be a string")
    names = set()
    for i, entry in enumerate(document["models"]):
        validate_entry(entry, where=f"models[{i}]")
        _check(entry["name"] not in names, where, f"duplicate name {entry['name']!r}")
        names.add(entry["name"])
    return document


def read(path=None) -> dict:
    """Reads and validates a manifest (default: `saved_models/manifest.json`).

    Args:
        path: A manifest JSON file.

    Returns:
        The manifest document, with `_root` set to the folder holding it
        (where shipped artifacts are looked up).
    """
    path = Path(path) if path is not None else default_manifest()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"Manifest {str(path)!r} does not exist.") from None
    except json.JSONDecodeError as error:
        raise ManifestError(f"Manifest {str(path)!r} is not JSON: {error}") from None
    validate(document, where=repr(str(path)))
    document["_root"] = str(path.parent)
    return document
