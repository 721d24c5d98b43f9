"""The runners of exported files now live in the core: `spzoo.runtime`.

Kept so that `spzoo.export.runtime.load` (and scripts importing it) still
work; new code imports `spzoo.runtime` (or `spzoo.export.load`).
"""

from spzoo.runtime import (  # noqa: F401
    FORMATS,
    OnnxRunner,
    Runner,
    SavedModelRunner,
    TFLiteRunner,
    artifact_format,
    load,
    onnx_providers,
    resolve_threshold,
)
