"""Runs a shipped model file in its own runtime: ONNX Runtime, TensorFlow, LiteRT.

```python
runner = spzoo.runtime.load("model.onnx")    # or a SavedModel dir, a .tflite
logits = runner(images)                       # float32 (B, H, W, C) -> (B, K)
logits = runner(images, threshold=-1.0)       # gated models
runner.metadata["output"]["classes"]
```

Inference, so part of the core: `spzoo.zoo` runs the zoo's files with it and
`spzoo.export` checks its exports with it (also as `spzoo.export.load`).
The input is checked against the metadata (rank, shape, dtype) before it
reaches the runtime, and a corrupted or truncated file raises `ValueError`
naming the file and what was expected. ONNX Runtime, TensorFlow and LiteRT
are imported by the runner that needs them, so importing this module stays
light.
"""

import abc
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from spzoo.artifact import (
    ASSET_NAME,
    FORMATS,
    INPUT_NAME,
    METADATA_KEY,
    MODEL_SHA256,
    OUTPUT_NAME,
    SIGNATURE,
    THRESHOLD_NAME,
    THRESHOLD_SIGNATURE,
    artifact_format,
    check_metadata,
    metadata_path,
)
from spzoo.layers.hard_concrete_gate import check_threshold

__all__ = [
    "FORMATS",
    "OnnxRunner",
    "Runner",
    "SavedModelRunner",
    "TFLiteRunner",
    "artifact_format",
    "load",
    "onnx_providers",
    "resolve_threshold",
]


def resolve_threshold(metadata: dict, threshold) -> np.ndarray:
    """The float32 threshold an artifact runs with: `threshold`, else the
    metadata's default (None: no threshold, -inf), clamped to the metadata's
    trained range `[lo, hi]` (below `lo` no gate closes; above `hi` they
    all would).

    Raises `ValueError` for a NaN or non-scalar threshold.
    """
    info = metadata["threshold"]
    if threshold is None:
        value = -math.inf if info["default"] is None else float(info["default"])
    else:
        try:
            value = float(check_threshold(threshold))
        except ValueError as error:
            raise ValueError(
                f"{error} Pass a number (the trained range is "
                f"{info.get('range')}) or None for the default "
                f"({info['default']})."
            ) from None
    span = info.get("range")
    if span:
        value = min(max(value, float(span[0])), float(span[1]))
    return np.asarray(value, np.float32)


def onnx_metadata(proto, path) -> dict:
    """The spzoo metadata of the loaded ONNX `proto` (read from `path`), or
    `ValueError` naming the file when it holds none."""
    props = {p.key: p.value for p in proto.metadata_props}
    where = f"ONNX file {str(path)!r} (metadata_props[{METADATA_KEY!r}])"
    try:
        metadata = json.loads(props[METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        metadata = None
    return check_metadata(metadata, where)


class Runner(abc.ABC):
    """An exported model loaded in its runtime; call it on a batch of images.

    Attributes:
        path: The artifact.
        format: One of `FORMATS`.
        metadata: The export's metadata document.
    """

    def __init__(self, path, format: str, metadata: dict):
        self.path = Path(path)
        self.format = format
        self.metadata = metadata

    @property
    def input_shape(self) -> tuple:
        return tuple(self.metadata["input"]["shape"])

    @property
    def takes_threshold(self) -> bool:
        return bool(self.metadata["threshold"]["input"])

    @property
    def input_name(self) -> str:
        return self.metadata["input"].get("name", INPUT_NAME)

    @property
    def input_dtype(self) -> str:
        return self.metadata["input"].get("dtype", "float32")

    def check_input(self, x) -> np.ndarray:
        """Returns `x` as a batch of the artifact's input dtype (float32, or
        uint8 pixels for a raw-input export), or raises `ValueError` naming
        the expected shape."""
        x = np.asarray(x)
        dtype = self.input_dtype
        expected = (
            f"a {dtype} batch of shape (batch, {', '.join(map(str, self.input_shape))})"
        )
        if not (
            np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
        ):
            raise ValueError(f"`inputs` of dtype {x.dtype}: expected {expected}.")
        if (
            x.ndim != len(self.input_shape) + 1
            or tuple(x.shape[1:]) != self.input_shape
        ):
            raise ValueError(
                f"`inputs` of shape {tuple(x.shape)}: expected {expected}."
            )
        if dtype == "uint8" and x.dtype != np.uint8:
            if x.size and (x.min() < 0 or x.max() > 255 or (x != np.rint(x)).any()):
                raise ValueError(
                    f"`inputs` of dtype {x.dtype} hold values that are not uint8 "
                    f"pixels: expected {expected} (a raw-input export)."
                )
        return x.astype(dtype, copy=False)

    def check_threshold(self, threshold):
        """The threshold to run with (`resolve_threshold`); None for an
        artifact without a threshold input.

        Raises `ValueError` for a threshold given to an artifact without a
        threshold input, and for a NaN or non-scalar threshold.
        """
        if not self.takes_threshold:
            if threshold is None:
                return None
            raise ValueError(
                f"`threshold` was given, but {str(self.path)!r} "
                f"({self.metadata['architecture']}) has no threshold input: "
                "the model has no gated cells"
                + (
                    " left (a slimmed export fixes its threshold)."
                    if self.metadata.get("slim")
                    else "."
                )
            )
        return resolve_threshold(self.metadata, threshold)

    def __call__(self, x, threshold=None) -> np.ndarray:
        """Logits `(B, K)` of the images `x` `(B, H, W, C)` (float32, or uint8
        pixels for a raw-input export; a raw-input audio export: waveforms
        `(B, samples)`)."""
        x = self.check_input(x)
        threshold = self.check_threshold(threshold)
        return np.asarray(self._run(x, threshold))

    @abc.abstractmethod
    def _run(self, x, threshold):
        """Runs the runtime on a checked batch (and threshold or None)."""


def onnx_providers(names=None) -> list[str]:
    """ONNX Runtime execution providers for `names`, checked.

    Args:
        names: Provider names, full (`"CUDAExecutionProvider"`) or short and
            case-insensitive (`"cuda"`, `"tensorrt"`, `"cpu"`); None: CPU.

    Returns:
        Full provider names in order of preference, CPU last (the fallback
        for nodes the others do not run) unless given.

    Raises:
        ValueError: A provider that this ONNX Runtime does not have, naming
            `--providers` and the available ones.
    """
    import onnxruntime as ort

    cpu = "CPUExecutionProvider"
    if not names:
        return [cpu]
    available = ort.get_available_providers()
    by_key = {}
    for full in available:
        by_key[full.lower()] = full
        by_key[full.lower().removesuffix("executionprovider")] = full
    chosen = []
    for name in names:
        full = by_key.get(str(name).strip().lower())
        if full is None:
            raise ValueError(
                f"`--providers`: {name!r} is not available in ONNX Runtime "
                f"{ort.__version__} here; available: {', '.join(available)} "
                "(CUDA and TensorRT need the onnxruntime-gpu package)."
            )
        if full not in chosen:
            chosen.append(full)
    if cpu not in chosen:
        chosen.append(cpu)
    return chosen


class OnnxRunner(Runner):
    """An ONNX file in ONNX Runtime (CPU unless `providers` says otherwise)."""

    def __init__(self, path, threads: int | None = None, providers=None):
        import onnx
        import onnxruntime as ort

        providers = onnx_providers(providers)

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as error:
            raise ValueError(
                f"ONNX file {str(path)!r} is corrupted or truncated: {error}"
            ) from error
        super().__init__(path, "onnx", onnx_metadata(proto, path))
        options = ort.SessionOptions()
        # The threshold is an initializer that is also a graph input (an
        # overridable default); ORT warns about that on every load.
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                proto.SerializeToString(),
                options,
                providers=providers,
            )
        except Exception as error:
            message = str(error)
            opsets = [(o.domain or "ai.onnx", o.version) for o in proto.opset_import]
            if "opset" in message.lower():
                raise ValueError(
                    f"ONNX Runtime {ort.__version__} cannot run {str(path)!r}: "
                    f"{message}. Re-export with a lower `--opset` (the file "
                    f"uses {opsets})."
                ) from error
            raise ValueError(
                f"ONNX Runtime cannot load {str(path)!r}: {message}"
            ) from error

    def _run(self, x, threshold):
        feeds = {self.input_name: x}
        if threshold is not None:
            feeds[THRESHOLD_NAME] = threshold
        return self.session.run([OUTPUT_NAME], feeds)[0]


class SavedModelRunner(Runner):
    """A SavedModel directory in TensorFlow."""

    def __init__(self, path):
        import tensorflow as tf

        path = Path(path)
        asset = path / "assets" / ASSET_NAME
        try:
            metadata = json.loads(asset.read_text())
        except (OSError, json.JSONDecodeError):
            metadata = None
        super().__init__(
            path,
            "savedmodel",
            check_metadata(metadata, f"SavedModel {str(path)!r} (assets/{ASSET_NAME})"),
        )
        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as error:
            raise ValueError(
                f"SavedModel {str(path)!r} is corrupted or incomplete: "
                f"{type(error).__name__}: {str(error)[:300]}"
            ) from error
        self.serve = self.loaded.signatures[SIGNATURE]
        self.serve_threshold = self.loaded.signatures.get(THRESHOLD_SIGNATURE)

    def _run(self, x, threshold):
        if threshold is None:
            return self.serve(**{self.input_name: x})[OUTPUT_NAME].numpy()
        return self.serve_threshold(**{self.input_name: x}, threshold=threshold)[
            OUTPUT_NAME
        ].numpy()


def _check_pair(path: Path, sidecar: Path, metadata: dict) -> None:
    """`ValueError` when the sidecar names another `.tflite` file (sidecars
    written before spzoo recorded `model_sha256` are taken as they are)."""
    expected = metadata.get(MODEL_SHA256)
    if expected is None:
        return
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != expected:
        raise ValueError(
            f"TFLite sidecar {str(sidecar)!r} belongs to another model (its "
            f"{MODEL_SHA256} is {expected}, {str(path)!r} has {actual}): an export "
            "interrupted between its two files, or files of two exports mixed. "
            "Export again."
        )


class TFLiteRunner(Runner):
    """A `.tflite` file in the LiteRT interpreter (`ai-edge-litert`)."""

    def __init__(self, path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        sidecar = metadata_path(path)
        try:
            metadata = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            metadata = None
        super().__init__(
            path, "tflite", check_metadata(metadata, f"TFLite sidecar {str(sidecar)!r}")
        )
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.runners = {
                key: self.interpreter.get_signature_runner(key)
                for key in self.interpreter.get_signature_list()
            }
        except Exception as error:
            raise ValueError(
                f"TFLite file {str(path)!r} is corrupted or truncated: {error}"
            ) from error
        _check_pair(path, sidecar, metadata)
        self.keys = (SIGNATURE, THRESHOLD_SIGNATURE)

    def _run(self, x, threshold):
        if threshold is None:
            return self.runners[self.keys[0]](**{self.input_name: x})[OUTPUT_NAME]
        return self.runners[self.keys[1]](**{self.input_name: x}, threshold=threshold)[
            OUTPUT_NAME
        ]


def load(path, threads: int | None = None, providers=None) -> Runner:
    """Loads an artifact written by `spzoo.export` in its runtime.

    Args:
        path: A `.onnx` file, a `.tflite` file or a SavedModel directory.
        threads: Intra-op threads of ONNX Runtime / LiteRT (default: theirs).
        providers: ONNX files: ONNX Runtime execution providers
            (`onnx_providers`; default CPU).

    Raises:
        ValueError: The path is not an artifact, is corrupted, lacks spzoo
            metadata, or `providers` is given for another format or names an
            unavailable provider.
    """
    kind = artifact_format(path)
    if providers and kind != "onnx":
        raise ValueError(
            f"`--providers` applies to ONNX files; {str(path)!r} is {kind}."
        )
    if kind == "onnx":
        return OnnxRunner(path, threads, providers)
    if kind == "tflite":
        return TFLiteRunner(path, threads)
    return SavedModelRunner(path)
