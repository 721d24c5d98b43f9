"""The model zoo: trained spzoo models with their metrics, verified downloads.

```python
from spzoo import zoo

zoo.list_models(dataset="fashion_mnist")
zoo.info("gated_cnn.fashion_mnist")["accuracy"]
model = zoo.load("gated_cnn.fashion_mnist", threshold=4.0)
onnx_path = zoo.fetch("gated_cnn.fashion_mnist", format="onnx")
saved_model_dir = zoo.fetch("gated_cnn.fashion_mnist", format="savedmodel")
zoo.evaluate("gated_cnn.fashion_mnist", format="tflite")["accuracy"]
```

The CLI is `spzoo zoo list|info|fetch` (`spzoo.zoo.cli`); `spzoo infer NAME`
runs a zoo model. See `spzoo.zoo.hub` for where files come from and the
environment variables (`SPZOO_HOME`, `SPZOO_ZOO_URL`, `SPZOO_OFFLINE`).
"""

from spzoo.zoo.archive import (
    ArchiveError,
    extract_archive,
    is_extracted,
    write_archive,
)
from spzoo.zoo.download import ChecksumError, DownloadError, download, sha256_file
from spzoo.zoo.evaluate import eval_arrays, evaluate, predict_file
from spzoo.zoo.hub import (
    ZooError,
    entry_of_file,
    fetch,
    file_url,
    home,
    info,
    list_models,
    load,
    resolve_artifact,
    resolve_base_url,
)
from spzoo.zoo.manifest import (
    FORMATS,
    ManifestError,
    default_manifest,
    file_record,
    read,
    validate,
    validate_entry,
)

__all__ = [
    "FORMATS",
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "ManifestError",
    "ZooError",
    "default_manifest",
    "download",
    "entry_of_file",
    "eval_arrays",
    "evaluate",
    "extract_archive",
    "fetch",
    "file_record",
    "file_url",
    "home",
    "info",
    "is_extracted",
    "list_models",
    "load",
    "predict_file",
    "read",
    "resolve_artifact",
    "resolve_base_url",
    "sha256_file",
    "validate",
    "validate_entry",
    "write_archive",
]
