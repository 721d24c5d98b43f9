"""Datasets by name, as `tf.data` pipelines with the paper's preprocessing.

```python
info = spzoo.data.get("mnist_5k")          # DatasetInfo: shapes, classes, source
train = spzoo.data.load("mnist_5k", split="train", batch_size=128)
```
"""

from spzoo.data.registry import DatasetInfo, get, list_datasets, load, register

__all__ = ["DatasetInfo", "get", "list_datasets", "load", "register"]
