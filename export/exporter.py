"""`export`: write an artifact, check its parity on real data, then move it in place.

```python
report = spzoo.export.export(model, "model.onnx", dataset="mnist_5k")
report = spzoo.export.export("runs/gated_cnn.mnist_5k.keras", "m.tflite")
report = spzoo.export.export(model, "slim.onnx", slim=True, threshold=0.5)
```

The artifact is written to a staging path next to the target, loaded in its
own runtime and compared with Keras (`spzoo.export.parity`); only when every
check passes is it renamed to the target, otherwise `ParityError` is raised
and nothing is left behind.
"""

import dataclasses
import os
import shutil
from pathlib import Path

import keras
import numpy as np

import spzoo.layers  # noqa: F401  (registers the layers)
import spzoo.models  # noqa: F401
from spzoo import data
from spzoo.artifact import FORMATS
from spzoo.data.preprocessing import check, dataset_preprocessing, from_dict
from spzoo.export.metadata import (
    has_gates,
    input_metadata,
    metadata_path,
    model_metadata,
)
from spzoo.export.onnx import DEFAULT_OPSET, to_onnx
from spzoo.export.parity import (
    DEFAULT_ATOL,
    MIN_EXAMPLES,
    ParityResult,
    check_onnx_reference,
    check_parity,
    parity_examples,
)
from spzoo.export.quantize import (
    CALIBRATION_EXAMPLES,
    INT8_MIN_AGREEMENT,
    INT8_RTOL,
    QUANTIZE,
    quantize_onnx,
    training_examples,
)
from spzoo.export.raw_input import raw_examples, raw_input_model
from spzoo.export.saved_model import to_saved_model
from spzoo.export.slim import slim_model
from spzoo.export.tflite import to_tflite
from spzoo.io import read_json, remove_stale, replace_dir, temp_path
from spzoo.layers.hard_concrete_gate import (
    check_threshold,
    get_threshold,
    set_threshold,
)
from spzoo.runtime import load
from spzoo.training.bn_calibration import model_levels
from spzoo.zoo import entry_of_file

WRITERS = {"onnx": to_onnx, "savedmodel": to_saved_model, "tflite": to_tflite}
SUFFIXES = {"onnx": ".onnx", "savedmodel": "", "tflite": ".tflite"}
REFERENCE_EXAMPLES = 16


@dataclasses.dataclass
class ExportReport:
    """What `export` wrote and measured.

    Attributes:
        path: The artifact.
        format: One of `spzoo.export.FORMATS`.
        metadata: Its metadata document.
        parity: The parity results (all passed).
    """

    path: Path
    format: str
    metadata: dict
    parity: list[ParityResult]


def load_keras_model(path) -> tuple[keras.Model, dict]:
    """Loads a `.keras` file and the training record `<stem>.json` beside it
    (written by `spzoo train`); for a zoo file without one, its manifest
    entry (dataset, classes); else `{}`."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise ValueError(f"`model` must be a .keras file; {str(path)!r} is not one.")
    try:
        model = keras.saving.load_model(str(path))
    except Exception as error:
        raise ValueError(
            f"Cannot load {str(path)!r}: {type(error).__name__}: {error}"
        ) from error
    record_path = path.with_suffix(".json")
    if record_path.is_file():
        return model, read_json(record_path, "training record")
    return model, entry_of_file(path) or {}


def format_of(path, format: str | None = None) -> str:
    """The export format: `format`, or guessed from the target path."""
    if format is None:
        suffix = Path(path).suffix
        format = {".onnx": "onnx", ".tflite": "tflite", "": "savedmodel"}.get(suffix)
        if format is None:
            raise ValueError(
                f"Cannot tell the format of {str(path)!r}; pass `format` "
                f"(one of {FORMATS})."
            )
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}; received {format!r}.")
    return format


def probe_thresholds(metadata: dict, count: int = 3) -> list[float]:
    """Thresholds spread over the metadata's threshold range (for parity)."""
    span = metadata["threshold"]["range"]
    if not span:
        return []
    return [
        float(v) for v in np.round(np.linspace(span[0], span[1], count + 2), 4)[1:-1]
    ]


def export(
    model,
    path,
    format: str | None = None,
    dataset: str | None = None,
    examples: int = MIN_EXAMPLES,
    threshold: float | None = None,
    slim: bool = False,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    classes=None,
    dynamic_slim: bool = False,
    channel_multiple: int = 1,
    engine: str = "auto",
    levels=None,
    batch_chunk: int | None = None,
    parity_thresholds=(),
    raw_input: bool = False,
    quantize: str | None = None,
    calibration_examples: int = CALIBRATION_EXAMPLES,
) -> ExportReport:
    """Exports `model` to `path` and checks parity on real examples.

    Args:
        model: A Keras model or a `.keras` path (its `spzoo train` record,
            `<stem>.json`, supplies the dataset and class names).
        path: Target: `x.onnx`, `x.tflite` or a SavedModel directory.
        format: `"onnx"`, `"savedmodel"` or `"tflite"` (default: from `path`).
        dataset: Dataset whose eval examples are used for parity (default:
            the training record's or zoo entry's; required for a model
            without either).
        examples: Number of parity examples (>= 256 for the zoo's checks).
        threshold: Gated models: the artifact's default threshold (full
            export) or its fixed threshold (`slim=True`); default the model's.
        slim: Remove the channels closed at `threshold` (`slim_model`).
        opset: ONNX opset.
        atol: Tolerance of the max abs logit difference.
        classes: Class names (default: the record's, else the dataset's).
        dynamic_slim: ONNX only: keep the threshold input and remove the
            closed channels inside the graph at run time
            (`spzoo.export.dynamic`).
        channel_multiple: With `slim`: round slimmed widths up to a multiple
            of this (see `slim_model`).
        engine: ONNX only: `"auto"`, `"builder"` or `"tf2onnx"` (see
            `spzoo.export.to_onnx`); the builder's threshold levels are
            parity-checked one by one.
        levels: ONNX builder only: its threshold levels (see `to_onnx`).
        batch_chunk: ONNX builder only: examples per chunk of a large batch
            (see `to_onnx`; 0: the whole batch at once).
        parity_thresholds: More thresholds to check parity at (gated
            models, every format; e.g. those of a zoo threshold curve).
        raw_input: The artifact takes raw uint8 pixels (or, for audio, a
            waveform at the config's sample rate) and preprocesses them in
            the graph (`spzoo.export.raw_input`); parity compares it with
            Keras on the same inputs preprocessed outside. ONNX: the tf2onnx
            engine (the builder writes the network only).
        quantize: `"int8"`: an int8 artifact (ONNX: `quantize_onnx`, QDQ;
            TFLite: full-integer), calibrated on the first
            `calibration_examples` examples of the dataset's training split;
            its check is top-1 agreement with Keras of at least
            `INT8_MIN_AGREEMENT` and logits within `INT8_RTOL` of the
            largest Keras logit, not float parity; gated models are
            calibrated at the default threshold and `parity_thresholds`,
            and checked at the default threshold.
        calibration_examples: With `quantize`: how many training examples
            calibrate the activation ranges.

    The metadata's `input.preprocessing_config` is the record's or zoo
    entry's, else the dataset's (`spzoo.data.dataset_preprocessing`).

    Returns:
        An `ExportReport`. Raises `ParityError` if any check fails.
    """
    record = {}
    if isinstance(model, str | os.PathLike):
        model, record = load_keras_model(model)
    format = format_of(path, format)
    if not isinstance(examples, int) or examples < 1:
        raise ValueError(f"`examples` must be an int >= 1; received {examples!r}.")
    threshold = check_threshold(threshold)
    if dynamic_slim and (slim or format != "onnx"):
        raise ValueError(
            "`dynamic_slim=True` is for ONNX exports without `slim`; received "
            f"format={format!r}, slim={slim!r}."
        )
    if raw_input and (dynamic_slim or engine == "builder"):
        raise ValueError(
            "`raw_input=True` exports through the tf2onnx engine, without "
            f"`dynamic_slim`; received engine={engine!r}, "
            f"dynamic_slim={dynamic_slim!r}."
        )
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise ValueError(
                f"`quantize` must be one of {QUANTIZE} or None; received {quantize!r}."
            )
        if format == "savedmodel" or raw_input or dynamic_slim:
            raise ValueError(
                "`quantize` is for ONNX and TFLite exports without `raw_input` or "
                f"`dynamic_slim`; received format={format!r}, raw_input={raw_input!r}, "
                f"dynamic_slim={dynamic_slim!r}."
            )
        if not isinstance(calibration_examples, int) or calibration_examples < 8:
            raise ValueError(
                "`calibration_examples` must be an int >= 8; received "
                f"{calibration_examples!r}."
            )
    gated = has_gates(model)
    if threshold is not None and not gated:
        raise ValueError(
            f"`threshold` was given, but {model.name!r} has no gated cells."
        )
    dataset = dataset or record.get("dataset")
    if dataset is None:
        raise ValueError(
            "`dataset` is required: the model has no training record "
            "(`<name>.json` beside the .keras file, written by `spzoo train`) "
            "and is not a zoo file, so its dataset and class names are unknown. "
            "Give the dataset it was trained on (`spzoo export ... --dataset "
            "NAME`; `spzoo data list`)."
        )
    info = data.get(dataset)
    x = parity_examples(dataset, model.inputs[0].shape[1:], examples)
    config = _preprocessing_config(record, info)
    raw = None
    if raw_input:
        if format == "onnx" and config["kind"] == "audio":
            raise ValueError(
                "`raw_input=True` for an audio model: ONNX is not supported "
                "(tf2onnx 1.17 cannot convert the STFT's complex magnitude with a "
                "dynamic batch); use format 'savedmodel' or 'tflite'."
            )
        raw, x = raw_examples(from_dict(config), x, len(x))
    classes = classes or record.get("classes") or list(info.class_names)
    if len(classes) != model.outputs[0].shape[-1]:
        classes = None
    saved_threshold = get_threshold(model) if gated else None
    try:
        if threshold is not None and not slim:
            set_threshold(model, threshold)
        exported, reference_threshold = model, None
        extra = {"dynamic_slim": True} if dynamic_slim else {}
        if slim:
            exported, slim_report = slim_model(model, threshold, channel_multiple)
            reference_threshold = slim_report.threshold
            extra = {"slim": slim_report.as_dict(), "source": model.name}
        metadata = model_metadata(
            exported,
            classes=classes,
            preprocessing=info.description,
            dataset=dataset,
            x=x,
            threshold_input=False if slim else None,
            extra=extra,
            preprocessing_config=config,
        )
        if raw_input:
            exported = raw_input_model(exported, from_dict(config))
            metadata["input"] = input_metadata(
                exported, info.description, config, raw_input=True
            )
        if slim and metadata["threshold"]["gated"]:
            metadata["threshold"]["default"] = reference_threshold
        options = {
            "opset": opset,
            "dynamic_slim": dynamic_slim,
            "engine": engine,
            "levels": levels,
            "batch_chunk": batch_chunk,
        }
        extra_thresholds = [check_threshold(t) for t in parity_thresholds or ()]
        if extra_thresholds and not metadata["threshold"]["input"]:
            raise ValueError(
                "`parity_thresholds` were given, but the artifact takes no threshold."
            )
        calibration = None
        if quantize:
            calibration = (
                training_examples(
                    dataset, model.inputs[0].shape[1:], calibration_examples
                ),
                [float(t) for t in extra_thresholds],
            )
        plan = _ParityPlan(
            model, x, atol, reference_threshold, tuple(extra_thresholds), raw
        )
        if quantize:
            plan = dataclasses.replace(
                plan, atol=0.0, rtol=INT8_RTOL, min_agreement=INT8_MIN_AGREEMENT
            )
        return _write_checked(
            exported, path, format, metadata, options, plan, calibration
        )
    finally:
        if gated:
            set_threshold(model, saved_threshold)


def _preprocessing_config(record: dict, info) -> dict:
    """The preprocessing as data: the training record's or zoo entry's
    `preprocessing_config`, else the dataset registry's."""

    inputs = record.get("input")
    config = (inputs if isinstance(inputs, dict) else record).get(
        "preprocessing_config"
    )
    if config is None:
        return dataset_preprocessing(info).as_dict()
    return check(config, "the record's `preprocessing_config`")


@dataclasses.dataclass
class _ParityPlan:
    """What an export is checked against: the Keras `model` on examples `x`
    (`raw`: the same examples as a raw-input artifact takes them) within
    `atol`, Keras run at `reference_threshold` (a slimmed export's) or the
    artifact's, at the artifact's thresholds plus `extra_thresholds`."""

    model: keras.Model
    x: np.ndarray
    atol: float
    reference_threshold: float | None = None
    extra_thresholds: tuple = ()
    raw: np.ndarray | None = None
    rtol: float = 0.0
    min_agreement: float = 1.0

    def check(self, target: Path, format: str, metadata: dict) -> list:
        """Parity of the artifact `target` (`ParityError` on a failure)."""
        runner = load(target)
        thresholds = [None]
        if metadata["threshold"]["input"] and self.min_agreement < 1.0:
            # int8: the default threshold only. One set of int8 scales serves
            # every threshold; where most gates are closed the float model's
            # logits barely separate the classes and rounding decides its
            # top-1 (the zoo measures an int8 file's accuracy per threshold).
            pass
        elif metadata["threshold"]["input"]:
            thresholds += probe_thresholds(metadata)
            levels = (runner.metadata.get("onnx") or {}).get("levels") or []
            thresholds += [r["threshold"] for r in levels[1:]]
            # Each level of switchable batch-norm statistics, in every format.
            thresholds += [
                t for t in model_levels(self.model) or [] if t not in thresholds
            ]
            thresholds += [t for t in self.extra_thresholds if t not in thresholds]
        results = check_parity(
            self.model,
            runner,
            self.x,
            thresholds,
            self.atol,
            self.reference_threshold,
            raw=self.raw,
            rtol=self.rtol,
            min_agreement=self.min_agreement,
        )
        del runner
        # ONNX's reference evaluator checks the float graph's operators; an
        # int8 file is checked in ONNX Runtime (above) only.
        if format == "onnx" and self.min_agreement == 1.0:
            results += check_onnx_reference(
                target,
                self.model,
                self.x[:REFERENCE_EXAMPLES],
                thresholds[:2],
                self.atol,
                self.reference_threshold,
                raw=None if self.raw is None else self.raw[:REFERENCE_EXAMPLES],
            )
        return results


def _write_checked(
    exported,
    path,
    format: str,
    metadata: dict,
    options: dict,
    plan: _ParityPlan,
    calibration: tuple | None = None,
) -> ExportReport:
    """Writes `exported` into a staging folder beside `path` (int8 when
    `calibration` is given: its examples and the thresholds to calibrate
    at), checks its parity (`plan`), then moves it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)  # staging folders of killed exports
    staging = temp_path(path)
    staging.mkdir()
    try:
        target = staging / f"model{SUFFIXES[format]}"
        kwargs = options if format == "onnx" else {}
        if format == "savedmodel" and plan.raw is not None:
            kwargs = {"slim_blocks": False}  # the block slimmer reads the network
        threshold_input = bool(metadata["threshold"]["input"])
        if calibration is not None and format == "tflite":
            examples, thresholds = calibration
            kwargs = {"int8_examples": examples, "int8_thresholds": thresholds}
        written = target
        if calibration is not None and format == "onnx":
            written = staging / "float.onnx"
        WRITERS[format](exported, written, metadata, threshold_input, **kwargs)
        if written != target:
            quantize_onnx(written, target, calibration[0], thresholds=calibration[1])
        results = plan.check(target, format, metadata)
        _move(target, path, format)
        return ExportReport(path, format, metadata, results)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move(source: Path, target: Path, format: str) -> None:
    if format == "savedmodel":
        replace_dir(source, target)  # the old one goes once the new one is in
        return
    if format == "tflite":
        os.replace(metadata_path(source), metadata_path(target))
    os.replace(source, target)


def default_path(
    model_path, format: str, slim: bool = False, threshold=None, quantize=None
) -> Path:
    """`runs/m.keras` -> `runs/m.onnx`, `runs/m.savedmodel/`, `runs/m.tflite`
    (slim: `runs/m.slim_t0.5.onnx`; int8: `runs/m.int8.onnx`)."""
    path = Path(model_path)
    stem = path.stem
    if slim:
        stem += ".slim" + ("" if threshold is None else f"_t{threshold:g}")
    if quantize:
        stem += f".{quantize}"
    suffix = SUFFIXES[format] or ".savedmodel"
    return path.with_name(stem + suffix)
