"""The NHN macro spec: its ops, its segments and its validation.

NHN paper, Section 2.1 and Figure 2 (after Pham et al., ENAS macro search):
an L-layer CNN split by average pooling into segments; each layer applies
one op to the previous layer's output and may take skip connections from
earlier layers of its segment; LDS adds add-on convolutions between layers
of a segment. The spec (see `spzoo.nhn.model` for what each key builds):

```json
{"family": "nhn", "name": "nhn_base", "filters": 16,
 "segments": [4, 4, 4], "smooth_init": true, "pooling": "depthwise",
 "dropout": 0.0,
 "layers": [{"op": "conv3x3", "skips": [], "channels": 16,
             "mask": null, "neuron_mask": null}, ...],
 "addons": [{"from": 0, "to": 2, "kernel": 3, "mask": [[0, 1, ...], ...]}]}
```

`channels` (conv ops: neurons kept after DNP, default `filters`), `mask`
(a `(C_in, C_out)` 0/1 kernel-connection mask) and `neuron_mask` (0 for a
removed neuron in a masked, not yet shrunk, model) are optional.
"""

import copy

OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "maxpool3x3", "avgpool3x3")
CONV_OPS = {"conv3x3": 3, "conv5x5": 5}
SEP_OPS = {"sep3x3": 3, "sep5x5": 5}
ADDON_KERNELS = (3, 5)


def segment_of(spec: dict) -> list:
    """Segment index of every layer."""
    return [s for s, n in enumerate(spec["segments"]) for _ in range(n)]


def check(spec: dict) -> dict:
    """Validates an NHN spec; returns a deep copy (`family` set to `"nhn"`).

    Raises:
        ValueError: naming what is wrong (the layer or add-on and the key).
    """
    if not isinstance(spec, dict):
        raise ValueError(f"`spec` must be a dict; received {type(spec).__name__}.")
    if spec.get("family", "nhn") != "nhn":
        raise ValueError(f"`spec['family']` must be 'nhn'; got {spec['family']!r}.")
    segments = spec.get("segments")
    if not segments or any(not isinstance(n, int) or n < 1 for n in segments):
        raise ValueError(
            f"`segments` must be a non-empty list of ints >= 1; received {segments!r}."
        )
    layer_specs = spec.get("layers", [])
    if len(layer_specs) != sum(segments):
        raise ValueError(
            f"The spec has {len(layer_specs)} layers; `segments` {segments} "
            f"needs {sum(segments)}."
        )
    seg = segment_of(spec)
    for i, layer in enumerate(layer_specs):
        if layer.get("op") not in OPS:
            raise ValueError(
                f"Layer {i}: `op` must be one of {OPS}; received {layer.get('op')!r}."
            )
        for s in layer.get("skips", []):
            if not (isinstance(s, int) and 0 <= s < i and seg[s] == seg[i]):
                raise ValueError(
                    f"Layer {i}: skip {s!r} must be an earlier layer of the same "
                    f"segment (segment {seg[i]})."
                )
    for addon in spec.get("addons", []):
        a, b = addon.get("from"), addon.get("to")
        if not (
            isinstance(a, int)
            and isinstance(b, int)
            and 0 <= a < b < len(layer_specs)
            and seg[a] == seg[b]
        ):
            raise ValueError(
                f"Add-on {a!r}->{b!r}: the input layer must be an earlier layer of "
                "the same segment as the output layer."
            )
        if addon.get("kernel") not in ADDON_KERNELS:
            raise ValueError(
                f"Add-on {a}->{b}: `kernel` must be 3 or 5; "
                f"received {addon.get('kernel')!r}."
            )
    spec = copy.deepcopy(spec)
    spec.setdefault("family", "nhn")
    return spec
