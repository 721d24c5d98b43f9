"""KerasTuner oracles and tuners: growth NAS, pruning NAS, network statistics.

```python
from spzoo.tuners import GrowthOracle, GrowthSpace, GrowthTuner
```

Attributes are imported on first use, so `spzoo --help` and the other
commands do not import KerasTuner. The modules are listed in docs/search.md
("Code layout"); the NHN model pieces the searches use are in `spzoo.nhn`.
"""

import importlib

_EXPORTS = {
    "GrowthSpace": "spzoo.tuners.growth_space",
    "GrowthOracle": "spzoo.tuners.growth_oracle",
    "GrowthTuner": "spzoo.tuners.growth_tuner",
    "PruningOracle": "spzoo.tuners.pruning",
    "PruningTuner": "spzoo.tuners.pruning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spzoo.tuners' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
