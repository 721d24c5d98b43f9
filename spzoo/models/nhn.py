"""The NHN macro (layer-hierarchy) family: an ENAS-macro CNN from a JSON spec.

NHN paper, Section 2.1 and Figure 2 (after Pham et al., ENAS macro search):
an L-layer CNN (12 by default) split by average pooling into segments; each
layer applies one op to the previous layer's output and may take skip
connections from earlier layers, merged by a 1x1 convolution:

    y_i = op_i(x_{i-1})
    x_i = BN(Conv1x1(concat(y_i, x_s for s in skips_i)))   if skips_i
    x_i = y_i                                              otherwise
    x_b <- x_b + sum_{add-ons a->b} AddOn_{a,b}(x_a)        (LDS, same segment)

Ops: `conv3x3`, `conv5x5` (ReLU-Conv-BN), `sep3x3`, `sep5x5` (ReLU-separable
conv-BN), `maxpool3x3`, `avgpool3x3` (stride 1). Skips and add-ons stay
within a segment (the data dimensions are uniform there). The head is the
whole-map depthwise pooling (or GAP), optional dropout and a dense layer
giving logits.

Spec:

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

import keras
from keras import layers

from spzoo.layers.smooth_init import SmoothInit, WholeMapDepthwisePooling
from spzoo.models.registry import register_family
from spzoo.nhn.masked import ChannelMask, MaskedConv2D

OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "maxpool3x3", "avgpool3x3")
CONV_OPS = {"conv3x3": 3, "conv5x5": 5}
SEP_OPS = {"sep3x3": 3, "sep5x5": 5}


def segment_of(spec: dict) -> list:
    """Segment index of every layer."""
    return [s for s, n in enumerate(spec["segments"]) for _ in range(n)]


def check_spec(spec: dict) -> None:
    """Raises `ValueError` naming what is wrong with an NHN spec."""
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
        if addon.get("kernel") not in (3, 5):
            raise ValueError(
                f"Add-on {a}->{b}: `kernel` must be 3 or 5; "
                f"received {addon.get('kernel')!r}."
            )


def _conv_init(spec, seed):
    if spec.get("smooth_init", True):
        return SmoothInit("he_normal", seed=seed)
    return keras.initializers.HeNormal(seed=seed)


def build_nhn(spec: dict, input_shape, num_classes: int, name: str | None = None):
    """Builds the Keras model of an NHN macro spec.

    Args:
        spec: The JSON spec (see the module docstring).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes (logits out).
        name: Model name (default the spec's `name`).
    """
    check_spec(spec)
    filters = int(spec.get("filters", 16))
    seed = spec.get("seed")
    seg = segment_of(spec)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = layers.BatchNormalization(name="stem_bn")(x)
    outs = []
    addons = spec.get("addons", [])
    for i, layer in enumerate(spec["layers"]):
        if i > 0 and seg[i] != seg[i - 1]:
            x = layers.AveragePooling2D(2, name=f"pool_{seg[i]}")(x)
        op = layer["op"]
        if op in CONV_OPS:
            y = layers.ReLU(name=f"l{i}_relu")(x)
            y = MaskedConv2D(
                int(layer.get("channels", filters)),
                CONV_OPS[op],
                padding="same",
                use_bias=False,
                mask=layer.get("mask"),
                kernel_initializer=_conv_init(spec, None if seed is None else seed + i),
                name=f"l{i}_conv",
            )(y)
            y = layers.BatchNormalization(name=f"l{i}_bn")(y)
            if layer.get("neuron_mask") is not None:
                y = ChannelMask(layer["neuron_mask"], name=f"l{i}_neurons")(y)
        elif op in SEP_OPS:
            y = layers.ReLU(name=f"l{i}_relu")(x)
            y = layers.SeparableConv2D(
                filters, SEP_OPS[op], padding="same", use_bias=False, name=f"l{i}_sep"
            )(y)
            y = layers.BatchNormalization(name=f"l{i}_bn")(y)
        elif op == "maxpool3x3":
            y = layers.MaxPooling2D(3, 1, padding="same", name=f"l{i}_pool")(x)
        else:
            y = layers.AveragePooling2D(3, 1, padding="same", name=f"l{i}_pool")(x)
        skips = layer.get("skips", [])
        if skips:
            y = layers.Concatenate(name=f"l{i}_concat")([y] + [outs[s] for s in skips])
            y = layers.Conv2D(
                filters, 1, use_bias=False, name=f"l{i}_merge", padding="same"
            )(y)
            y = layers.BatchNormalization(name=f"l{i}_merge_bn")(y)
        terms = [y]
        for addon in addons:
            if addon["to"] == i:
                terms.append(
                    MaskedConv2D(
                        int(y.shape[-1]),
                        addon["kernel"],
                        padding="same",
                        use_bias=False,
                        mask=addon.get("mask"),
                        kernel_initializer=_conv_init(spec, None),
                        name=addon_name(addon),
                    )(outs[addon["from"]])
                )
        if len(terms) > 1:
            y = layers.Add(name=f"l{i}_addons")(terms)
        outs.append(y)
        x = y
    x = layers.ReLU(name="head_relu")(x)
    if spec.get("pooling", "depthwise") == "depthwise":
        x = WholeMapDepthwisePooling(name="head_pool")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if spec.get("dropout", 0.0):
        x = layers.Dropout(float(spec["dropout"]), name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="head_dense")(x)
    return keras.Model(inputs, outputs, name=name or spec.get("name", "nhn"))


def addon_name(addon: dict) -> str:
    """Layer name of an add-on location: `addon_<from>_<to>_k<kernel>`."""
    return f"addon_{addon['from']}_{addon['to']}_k{addon['kernel']}"


register_family("nhn", build_nhn)
