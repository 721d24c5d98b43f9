"""Export to SavedModel, ONNX and TFLite, with parity checks and a run-time threshold.

```python
from spzoo import export

export.to_onnx(model, "m.onnx")                 # image[, threshold] -> logits
export.to_saved_model(model, "m_savedmodel")    # + assets/spzoo_metadata.json
export.to_tflite(model, "m.tflite")             # + m.tflite.json (metadata)
report = export.export(model, "m.onnx", dataset="mnist_5k")   # + parity
export.export(model, "raw.onnx", dataset="mnist_5k", raw_input=True)  # uint8 in
slim, info = export.slim_model(model, threshold=0.5)  # closed channels removed
runner = export.load("m.onnx"); logits = runner(images, threshold=-1.0)
```

Installed as `spzoo.export`; the CLI commands are `spzoo export` and
`spzoo infer` (`spzoo.export.cli`).
"""

import importlib

# Attributes are imported on first use (PEP 562), so the command line builds
# `spzoo export --help` without importing Keras and TensorFlow.
_EXPORTS = {
    "ExportReport": "spzoo.export.exporter",
    "export": "spzoo.export.exporter",
    "load_keras_model": "spzoo.export.exporter",
    "model_metadata": "spzoo.export.metadata",
    "to_onnx": "spzoo.export.onnx",
    "ParityError": "spzoo.export.parity",
    "ParityResult": "spzoo.export.parity",
    "check_onnx_reference": "spzoo.export.parity",
    "check_parity": "spzoo.export.parity",
    "parity_examples": "spzoo.export.parity",
    "raw_input_model": "spzoo.export.raw_input",
    "FORMATS": "spzoo.artifact",
    "Runner": "spzoo.runtime",
    "load": "spzoo.runtime",
    "to_saved_model": "spzoo.export.saved_model",
    "serving_functions": "spzoo.export.serving",
    "SlimReport": "spzoo.export.slim",
    "slim_model": "spzoo.export.slim",
    "to_tflite": "spzoo.export.tflite",
}

__all__ = [
    "FORMATS",
    "ExportReport",
    "ParityError",
    "ParityResult",
    "Runner",
    "SlimReport",
    "check_onnx_reference",
    "check_parity",
    "export",
    "load",
    "load_keras_model",
    "model_metadata",
    "parity_examples",
    "raw_input_model",
    "serving_functions",
    "slim_model",
    "to_onnx",
    "to_saved_model",
    "to_tflite",
]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spzoo.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
