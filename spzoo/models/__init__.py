"""Model builders: the ResNet family of Table II and the zoo's other families.

```python
model = spzoo.models.build("sp_resnet", input_shape=(28, 28, 1), num_classes=10)
```
"""

from spzoo.models.builders import resnet, resnet_op, resnet_struct, sp_resnet
from spzoo.models.gated_cnn import build_gated_cnn
from spzoo.models.growth import build_growth as build_growth
from spzoo.models.nhn import build_nhn as build_nhn
from spzoo.models.registry import (
    FAMILIES,
    Family,
    build,
    check,
    family_of,
    get_spec,
    list_architectures,
    register_family,
    resolve_spec,
)
from spzoo.models.resnet import build_resnet, check_spec, resnet_spec

__all__ = [
    "FAMILIES",
    "Family",
    "build",
    "build_gated_cnn",
    "build_resnet",
    "check",
    "check_spec",
    "family_of",
    "get_spec",
    "list_architectures",
    "register_family",
    "resnet",
    "resnet_op",
    "resnet_spec",
    "resnet_struct",
    "resolve_spec",
    "sp_resnet",
]
