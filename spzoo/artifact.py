"""What a shipped model file is: its formats, names and metadata document.

`spzoo.export` writes these files and `spzoo.runtime` runs them; both read
the names here. An exported model carries one JSON document (format
`spzoo-export/1`, see `spzoo.export.metadata.model_metadata`): as ONNX
`metadata_props` (key `spzoo`), as the SavedModel asset
`assets/spzoo_metadata.json`, and next to a TFLite file as the sidecar
`<file>.tflite.json` (`metadata_path`). No Keras or TensorFlow here, so the
command line reads these names without them.
"""

from pathlib import Path

FORMATS = ("onnx", "savedmodel", "tflite")
FORMAT = "spzoo-export/1"
METADATA_KEY = "spzoo"
ASSET_NAME = "spzoo_metadata.json"
INPUT_NAME = "image"
WAVEFORM_NAME = "waveform"  # raw-input audio exports: (batch, samples)
OUTPUT_NAME = "logits"
THRESHOLD_NAME = "threshold"
SIGNATURE = "serving_default"  # SavedModel / TFLite: image -> logits
THRESHOLD_SIGNATURE = "serve_threshold"  # image, threshold -> logits
MODEL_SHA256 = "model_sha256"  # TFLite sidecar key: the sha256 of its file


def metadata_path(tflite_path) -> Path:
    """The sidecar JSON of a TFLite file: `<file>.tflite` -> `<file>.tflite.json`."""
    path = Path(tflite_path)
    return path.with_name(path.name + ".json")


def check_metadata(metadata, where: str) -> dict:
    """Checks that `metadata` is an spzoo export document; returns it."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(
            f"{where} holds no spzoo metadata of format {FORMAT!r}; was the "
            "artifact written by `spzoo export`?"
        )
    return metadata


def artifact_format(path) -> str:
    """`"onnx"`, `"savedmodel"` or `"tflite"` from the path; `ValueError` else."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Artifact {str(path)!r} does not exist.")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ValueError(
            f"Directory {str(path)!r} is not a SavedModel (no saved_model.pb)."
        )
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".tflite":
        return "tflite"
    raise ValueError(
        f"Artifact {str(path)!r}: expected a .onnx file, a .tflite file or a "
        "SavedModel directory."
    )
