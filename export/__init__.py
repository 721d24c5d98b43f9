"""Export to SavedModel, ONNX and TFLite, with parity checks and a run-time threshold.

```python
from spzoo import export

export.to_onnx(model, "m.onnx")                 # image[, threshold] -> logits
export.to_saved_model(model, "m_savedmodel")    # + assets/spzoo_metadata.json
export.to_tflite(model, "m.tflite")             # + m.tflite.json (metadata)
report = export.export(model, "m.onnx", dataset="mnist_5k")   # + parity
slim, info = export.slim_model(model, threshold=0.5)  # closed channels removed
runner = export.load("m.onnx"); logits = runner(images, threshold=-1.0)
```

Installed as `spzoo.export`; the CLI commands are `spzoo export` and
`spzoo infer` (`spzoo.export.cli`).
"""

from spzoo.export.exporter import ExportReport, export, load_keras_model
from spzoo.export.metadata import model_metadata
from spzoo.export.onnx import to_onnx
from spzoo.export.parity import (
    ParityError,
    ParityResult,
    check_onnx_reference,
    check_parity,
    parity_examples,
)
from spzoo.export.runtime import FORMATS, Runner, load
from spzoo.export.saved_model import to_saved_model
from spzoo.export.serving import serving_functions
from spzoo.export.slim import SlimReport, slim_model
from spzoo.export.tflite import to_tflite

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
    "serving_functions",
    "slim_model",
    "to_onnx",
    "to_saved_model",
    "to_tflite",
]
