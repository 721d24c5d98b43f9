"""The NHN macro (layer-hierarchy) family: `check(spec)` and `build(...)`.

The family's pieces live with the rest of the NHN paper in `spzoo.nhn`: the
spec and its validation in `spzoo.nhn.spec`, the model in
`spzoo.nhn.model`, the layer names in `spzoo.nhn.naming`.

```python
model = spzoo.models.build(spec, input_shape=(32, 32, 3), num_classes=10)
```
"""

from spzoo.models.registry import register_family
from spzoo.nhn.model import build
from spzoo.nhn.spec import CONV_OPS, OPS, SEP_OPS, check, segment_of

# The names `spzoo.models` exports (`spzoo.models.build_nhn`).
build_nhn = build

__all__ = ["CONV_OPS", "OPS", "SEP_OPS", "build", "build_nhn", "check", "segment_of"]

register_family("nhn", build, check)
