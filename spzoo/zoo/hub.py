"""The zoo's public functions: list, describe, fetch and load trained models.

```python
from spzoo import zoo

zoo.list_models("gated*")              # names, timm-style glob filter
zoo.info("gated_cnn.fashion_mnist")    # the manifest entry (+ resolved URLs)
path = zoo.fetch("gated_cnn.fashion_mnist", format="onnx")   # a local file
model = zoo.load("gated_cnn.fashion_mnist", threshold=4.0)  # a Keras model
```

Where a file comes from, in order: `saved_models/` (shipped with the
repository, checked against its sha256; a wheel ships only the manifest),
the cache
`$SPZOO_HOME/models/<name>/` (default `~/.spzoo`, KERAS_HOME-style), then a
download from `<base_url>/<file>` into the cache. The base URL is the
`base_url=` argument, else `$SPZOO_ZOO_URL` (a mirror), else the
manifest's. `offline=True` (or `SPZOO_OFFLINE=1`) never touches the network.
A SavedModel is shipped as an archive and extracted into the cache
(`spzoo.zoo.archive`); a TFLite file comes with its metadata sidecar.
"""

import copy
import difflib
import fnmatch
import os
from pathlib import Path

from spzoo.zoo import manifest as manifest_lib
from spzoo.zoo.archive import (
    ArchiveError,
    extract_archive,
    extracted_name,
    is_extracted,
)
from spzoo.zoo.download import (
    ChecksumError,
    DownloadError,
    default_deadline,
    download,
    lock_file,
    sha256_file,
    verify,
)

HOME_ENV = "SPZOO_HOME"
URL_ENV = "SPZOO_ZOO_URL"
OFFLINE_ENV = "SPZOO_OFFLINE"
MANIFEST_ENV = "SPZOO_ZOO_MANIFEST"
LOCK_SECONDS = 600.0  # longest wait for another process's extraction


class ZooError(ValueError):
    """An unknown model or format, or a file that cannot be had."""


def home(path=None) -> Path:
    """The zoo's home: `path`, else `$SPZOO_HOME`, else `~/.spzoo`."""
    return Path(
        os.path.expanduser(path or os.environ.get(HOME_ENV) or "~/.spzoo")
    ).resolve()


def _manifest(manifest) -> dict:
    if isinstance(manifest, dict):
        return manifest
    return manifest_lib.read(manifest or os.environ.get(MANIFEST_ENV) or None)


def _entries(manifest=None) -> dict:
    return {entry["name"]: entry for entry in _manifest(manifest)["models"]}


def resolve_base_url(url: str | None = None, manifest=None) -> str | None:
    """The download base URL: `url`, else `$SPZOO_ZOO_URL`, else the manifest's."""
    value = url or os.environ.get(URL_ENV) or _manifest(manifest).get("base_url")
    return value.rstrip("/") if value else None


def file_url(record: dict, base_url: str | None = None, manifest=None) -> str | None:
    """The URL of a manifest file record: `<mirror>/<file>` when a mirror is
    given (`base_url` or `$SPZOO_ZOO_URL`), else the record's own `url`, else
    `<manifest base_url>/<file>`; None when there is none."""
    mirror = base_url or os.environ.get(URL_ENV)
    if not mirror and record.get("url"):
        return record["url"]
    base = resolve_base_url(mirror, manifest)
    return f"{base}/{record['file']}" if base else None


def _entry(name: str, manifest=None) -> dict:
    entries = _entries(manifest)
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ZooError(
            f"Unknown model {name!r}.{hint} `spzoo zoo list` shows the "
            f"{len(entries)} models of the zoo."
        )
    return entries[name]


def list_models(
    filter: str | None = None,
    dataset: str | None = None,
    family: str | None = None,
    manifest=None,
) -> list[str]:
    """Names of the zoo's models, sorted.

    Args:
        filter: A glob on the name (`"gated*"`, `"*.fashion_mnist"`).
        dataset: Keep models trained on this dataset.
        family: Keep models of this family (`"gated_cnn"`, `"resnet"`, ...).
        manifest: A manifest path or document (default: the shipped one).
    """
    names = []
    for name, entry in _entries(manifest).items():
        if filter and not fnmatch.fnmatchcase(name, filter):
            continue
        if dataset and entry["dataset"] != dataset:
            continue
        if family and entry["family"] != family:
            continue
        names.append(name)
    return sorted(names)


def info(name: str, manifest=None, base_url: str | None = None) -> dict:
    """The manifest entry of model `name`, each file with its resolved `url`."""
    document = _manifest(manifest)
    entry = copy.deepcopy(_entry(name, document))
    for record in entry["files"].values():
        record["url"] = file_url(record, base_url, document)
    return entry


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes")


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ZooError(
            f"Cannot create the zoo cache {str(path)!r}: {error}. Set {HOME_ENV} "
            "(or pass `cache_dir=`) to a writable folder."
        ) from None
    if not os.access(path, os.W_OK):
        raise ZooError(
            f"The zoo cache {str(path)!r} is not writable. Set {HOME_ENV} (or pass "
            "`cache_dir=`) to a writable folder."
        )
    return path


def _files(record: dict) -> list[dict]:
    """A format's file records: the file, then its sidecar (TFLite metadata)."""
    return [record] + ([record["sidecar"]] if "sidecar" in record else [])


def _cached(
    name: str, format: str, records: list, folder: Path, url_of, offline, progress
) -> Path:
    """The files `records` in the cache `folder`, verified; downloaded when
    missing (unless offline). Returns the first one's path."""
    targets = [folder / record["file"] for record in records]
    missing = []
    for target, record in zip(targets, records, strict=True):
        if not target.is_file():
            missing.append((target, record))
            continue
        try:
            verify(target, record["sha256"], delete=False)
        except ChecksumError:
            if _offline(offline):  # delete under the lock, then report
                lock = lock_file(target, default_deadline(record["size"]))
                try:
                    verify(target, record["sha256"])  # unless fixed meanwhile
                finally:
                    lock.release()
                continue
            missing.append((target, record))  # `download` deletes it, under the lock
    if missing and _offline(offline):
        raise ZooError(
            f"Model {name!r} ({format}) is not in the cache {str(folder)!r} "
            f"and offline mode is on ({OFFLINE_ENV} or `offline=True`)."
        )
    for target, record in missing:
        url = url_of(record)
        if url is None:
            raise ZooError(
                f"Model {name!r} ({format}) is not cached and the manifest has no "
                f"URL for {record['file']!r}: set {URL_ENV} (or pass `base_url=`) "
                "to a mirror of saved_models/."
            )
        _writable_dir(folder)
        download(url, target, record["sha256"], record["size"], progress=progress)
    return targets[0]


def _extracted(archive: Path, record: dict, folder: Path) -> Path:
    """The SavedModel folder of `archive`, extracted into the cache `folder`
    (atomically, under the archive's lock) unless already there."""
    target = folder / extracted_name(record["file"])
    if is_extracted(target, record["sha256"]):
        return target
    _writable_dir(folder)
    lock = lock_file(folder / record["file"], LOCK_SECONDS, "extracting")
    try:
        if not is_extracted(target, record["sha256"]):  # not done meanwhile
            verify(archive, record["sha256"], delete=archive.parent == folder)
            extract_archive(archive, target, record["sha256"])
    finally:
        lock.release()
    return target


def fetch(
    name: str,
    format: str = "keras",
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    shipped: bool = True,
    progress: bool = True,
    manifest=None,
) -> Path:
    """A verified local path of model `name` in `format`.

    Args:
        name: A model name (`list_models()`).
        format: `"keras"`, `"onnx"`, `"tflite"` or `"savedmodel"` (those the
            entry has).
        cache_dir: The zoo home (default `$SPZOO_HOME` or `~/.spzoo`); files go
            to `<cache_dir>/models/<name>/`.
        base_url: Download base URL (default `$SPZOO_ZOO_URL`, else the
            manifest's).
        offline: Never download (default: `$SPZOO_OFFLINE`).
        shipped: Use the copy in `saved_models/` when it is there.
        progress: Show a progress bar while downloading.
        manifest: A manifest path or document (default: the shipped one).

    Returns:
        The path of a file whose sha256 matches the manifest. `"tflite"`:
        the `.tflite` file, with its metadata sidecar `<file>.json` beside
        it. `"savedmodel"`: the SavedModel folder extracted from the
        verified archive into `<cache_dir>/models/<name>/` (never into
        `saved_models/`), extracted again when missing or incomplete.

    Raises:
        ZooError: Unknown name or format, offline without a cached copy, no
            base URL, or an unwritable cache.
        DownloadError: Unreachable server or a download that stays short.
        ChecksumError: The file's sha256 differs (the bad file is deleted).
        ArchiveError: A SavedModel archive with an unsafe member (an
            absolute path, `..`, a link).
    """
    document = _manifest(manifest)
    entry = _entry(name, document)
    if format not in entry["files"]:
        raise ZooError(
            f"Model {name!r} has no {format!r} file; it has "
            f"{', '.join(sorted(entry['files']))}."
        )
    record = entry["files"][format]
    records = _files(record)
    folder = home(cache_dir) / "models" / name
    if format == "savedmodel":  # fully offline once extracted
        target = folder / extracted_name(record["file"])
        if is_extracted(target, record["sha256"]):
            return target
    local = Path(document.get("_root", manifest_lib.default_manifest().parent))
    if shipped and all((local / r["file"]).is_file() for r in records):
        for r in records:
            verify(local / r["file"], r["sha256"], delete=False)
        path = local / record["file"]
    else:
        path = _cached(
            name,
            format,
            records,
            folder,
            lambda r: file_url(r, base_url, document),
            offline,
            progress,
        )
    if format == "savedmodel":
        return _extracted(path, record, folder)
    return path


def load(
    name: str,
    threshold: float | None = None,
    num_classes: int | None = None,
    **fetch_kwargs,
):
    """Model `name` as a Keras model (its `.keras` file, fetched if needed).

    Args:
        name: A model name (`list_models()`).
        threshold: Gated models: the threshold on log-alpha to set (default:
            the one the file holds).
        num_classes: For fine-tuning: a number of classes other than the
            model's gives its architecture with a new, freshly initialised
            head and every other weight from the zoo model
            (`spzoo.zoo.finetune`). None: the model as trained.
        **fetch_kwargs: Passed to `fetch` (`cache_dir`, `base_url`, ...).
    """
    import keras

    import spzoo.layers  # noqa: F401  (registers the layers)
    import spzoo.models  # noqa: F401
    from spzoo.layers.hard_concrete_gate import set_threshold

    path = fetch(name, format="keras", **fetch_kwargs)
    model = keras.saving.load_model(str(path), compile=False)
    entry = _entry(name, fetch_kwargs.get("manifest"))
    if num_classes is not None and int(num_classes) != len(entry["classes"]):
        from spzoo.zoo.finetune import with_new_head

        model = with_new_head(model, entry["spec"], num_classes)
    if threshold is not None:
        set_threshold(model, threshold)
    return model


def entry_of_file(path, manifest=None) -> dict | None:
    """The manifest entry that lists a file with `path`'s size and sha256.

    This is how a zoo file that travelled without its manifest entry (a
    `zoo.fetch(format="keras")` path, a copy of `saved_models/`) is known:
    its dataset and class names come from the entry. None when no entry
    lists such a file.
    """
    path = Path(path)
    size = path.stat().st_size
    candidates = [
        entry
        for entry in _entries(manifest).values()
        if any(
            r["size"] == size
            for record in entry["files"].values()
            for r in _files(record)
        )
    ]
    if not candidates:
        return None
    digest = sha256_file(path)
    for entry in candidates:
        for record in entry["files"].values():
            if any(r["sha256"] == digest for r in _files(record)):
                return copy.deepcopy(entry)
    return None


def resolve_artifact(
    text: str, formats=("onnx", "tflite", "savedmodel"), **fetch_kwargs
) -> str:
    """`text` if it is an existing path, else the first of `formats` that zoo
    model `text` has, fetched (for `spzoo infer NAME`)."""
    if os.path.exists(text):
        return text
    try:
        entry = _entry(text, fetch_kwargs.get("manifest"))
    except ZooError as error:
        raise ZooError(f"{text!r} is neither a file nor a zoo model. {error}") from None
    for format in formats:
        if format in entry["files"]:
            return str(fetch(text, format=format, **fetch_kwargs))
    raise ZooError(
        f"Zoo model {text!r} has no {'/'.join(formats)} file; it has "
        f"{', '.join(sorted(entry['files']))}."
    )


__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "ZooError",
    "entry_of_file",
    "fetch",
    "home",
    "info",
    "list_models",
    "load",
    "file_url",
    "resolve_artifact",
    "resolve_base_url",
]
