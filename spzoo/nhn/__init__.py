"""Neuron hierarchical networks (NHN): the paper's model pieces in one place.

| paper                                  | module                        |
| -------------------------------------- | ----------------------------- |
| macro spec, ops, segments (2.1)        | `spzoo.nhn.spec`              |
| the macro model (2.1, Fig. 2)          | `spzoo.nhn.model`             |
| layer names (built and parsed)         | `spzoo.nhn.naming`            |
| SmoothInit, whole-map pooling (2.2)    | `spzoo.nhn.smooth_init`       |
| masked convolutions, neuron masks      | `spzoo.nhn.masked`            |
| DNP (2.2)                              | `spzoo.nhn.dnp`               |
| add-on locations and their gene (2.3)  | `spzoo.nhn.addons`            |
| LDS weight-sharing supernet (2.3)      | `spzoo.nhn.addon_supernet`    |
| ENAS macro space (2.1)                 | `spzoo.nhn.macro_space`       |
| its weight-sharing supernet            | `spzoo.nhn.macro_supernet`    |
| the supernet's choice layer            | `spzoo.nhn.choice`            |
| training recipe (3)                    | `spzoo.nhn.recipe`            |
| NHN score (Table 1)                    | `spzoo.nhn.score`             |

The searches over these pieces (the macro search, LDS and the pipeline
that chains them) are in `spzoo.tuners`; the family's `check`/`build` is
`spzoo.models.nhn`. `recipe`, `addon_supernet` and `macro_supernet` train
(they import `spzoo.training` and `spzoo.data`) and are not imported here.
"""

from spzoo.nhn.dnp import (
    copy_weights,
    kernel_std,
    masked_spec,
    prune,
    prune_spec,
    pruned_spec,
    threshold_for_fraction,
    transfer_weights,
)
from spzoo.nhn.masked import ChannelMask, MaskedConv2D, effective_params
from spzoo.nhn.naming import addon_layer_name, parse_addon_layer_name
from spzoo.nhn.score import nhn_score

__all__ = [
    "copy_weights",
    "ChannelMask",
    "MaskedConv2D",
    "addon_layer_name",
    "effective_params",
    "kernel_std",
    "masked_spec",
    "nhn_score",
    "parse_addon_layer_name",
    "prune",
    "pruned_spec",
    "prune_spec",
    "threshold_for_fraction",
    "transfer_weights",
]
