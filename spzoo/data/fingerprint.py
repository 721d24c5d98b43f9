"""The sha256 of a dataset split as spzoo loads it.

```python
spzoo.data.fingerprint("fashion_mnist", "train")   # '3f1c...' (64 hex digits)
```

What is hashed is what a model sees: the split as `spzoo.data.load` yields it
with its preprocessing applied, unshuffled and unaugmented, in the loader's
order. Every example contributes its float32 input and its int32 label; the
digest starts with the examples' shape, so two splits of different shapes
never share a digest. A changed source file, a changed preprocessing or a
changed order all change it: a zoo card that records it says exactly which
data the model was trained and evaluated on.
"""

import hashlib

import numpy as np

from spzoo.data.registry import load

# Batches read at a time from a streaming (tf.data) loader.
_BATCH = 1024


def fingerprint(name: str, split: str = "train", **options) -> str:
    """Returns the sha256 (hex) of split `split` of dataset `name` as loaded.

    Args:
        name: A registered dataset name.
        split: `"train"` or `"eval"`.
        **options: Passed to the dataset's loader, as in `spzoo.data.load`.

    Returns:
        64 hexadecimal digits.
    """
    ds = load(name, split, batch_size=_BATCH, shuffle=False, **options)
    shape = tuple(ds.element_spec[0].shape[1:])
    digest = hashlib.sha256(f"spzoo-data-v1 {shape}\n".encode())
    for x, y in ds.as_numpy_iterator():
        digest.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(y, dtype="<i4").tobytes())
    return digest.hexdigest()
