"""The NHN macro model (NHN paper, Section 2.1, Figure 2) built from its spec.

    y_i = op_i(x_{i-1})
    x_i = BN(Conv1x1(concat(y_i, x_s for s in skips_i)))   if skips_i
    x_i = y_i                                              otherwise
    x_b <- x_b + sum_{add-ons a->b} AddOn_{a,b}(x_a)        (LDS, same segment)

Ops: `conv3x3`, `conv5x5` (ReLU-Conv-BN), `sep3x3`, `sep5x5` (ReLU-separable
conv-BN), `maxpool3x3`, `avgpool3x3` (stride 1). Skips and add-ons stay
within a segment (the data dimensions are uniform there). The head is the
whole-map depthwise pooling (or GAP), optional dropout and a dense layer
giving logits. Layer names follow `spzoo.nhn.naming`; the spec format is
`spzoo.nhn.spec`.
"""

import keras
from keras import layers

from spzoo.nhn.masked import ChannelMask, MaskedConv2D
from spzoo.nhn.naming import addon_layer_name, layer_name
from spzoo.nhn.smooth_init import SmoothInit, WholeMapDepthwisePooling
from spzoo.nhn.spec import CONV_OPS, SEP_OPS, check, segment_of


def _conv_init(spec, seed):
    if spec.get("smooth_init", True):
        return SmoothInit("he_normal", seed=seed)
    return keras.initializers.HeNormal(seed=seed)


def _op(x, spec: dict, i: int, layer: dict, filters: int, seed):
    """Layer `i`'s op on `x` (before skips and add-ons)."""
    op = layer["op"]
    if op in CONV_OPS:
        y = layers.ReLU(name=layer_name(i, "relu"))(x)
        y = MaskedConv2D(
            int(layer.get("channels", filters)),
            CONV_OPS[op],
            padding="same",
            use_bias=False,
            mask=layer.get("mask"),
            kernel_initializer=_conv_init(spec, None if seed is None else seed + i),
            name=layer_name(i, "conv"),
        )(y)
        y = layers.BatchNormalization(name=layer_name(i, "bn"))(y)
        if layer.get("neuron_mask") is not None:
            y = ChannelMask(layer["neuron_mask"], name=layer_name(i, "neurons"))(y)
        return y
    if op in SEP_OPS:
        y = layers.ReLU(name=layer_name(i, "relu"))(x)
        y = layers.SeparableConv2D(
            filters,
            SEP_OPS[op],
            padding="same",
            use_bias=False,
            name=layer_name(i, "sep"),
        )(y)
        return layers.BatchNormalization(name=layer_name(i, "bn"))(y)
    pool = layers.MaxPooling2D if op == "maxpool3x3" else layers.AveragePooling2D
    return pool(3, 1, padding="same", name=layer_name(i, "pool"))(x)


def _merge_skips(y, outs: list, i: int, skips: list, filters: int):
    """Concatenates the skips onto `y` and merges them with a 1x1 conv."""
    y = layers.Concatenate(name=layer_name(i, "concat"))([y] + [outs[s] for s in skips])
    y = layers.Conv2D(
        filters, 1, use_bias=False, name=layer_name(i, "merge"), padding="same"
    )(y)
    return layers.BatchNormalization(name=layer_name(i, "merge_bn"))(y)


def _add_addons(y, outs: list, spec: dict, i: int):
    """Adds the add-on convolutions into layer `i` (none: `y` unchanged)."""
    terms = [y]
    for addon in spec.get("addons", []):
        if addon["to"] == i:
            terms.append(
                MaskedConv2D(
                    int(y.shape[-1]),
                    addon["kernel"],
                    padding="same",
                    use_bias=False,
                    mask=addon.get("mask"),
                    kernel_initializer=_conv_init(spec, None),
                    name=addon_layer_name(addon["from"], addon["to"], addon["kernel"]),
                )(outs[addon["from"]])
            )
    return layers.Add(name=layer_name(i, "addons"))(terms) if len(terms) > 1 else y


def build(spec: dict, input_shape, num_classes: int, name: str | None = None):
    """Builds the Keras model of an NHN macro spec.

    Args:
        spec: The JSON spec (see `spzoo.nhn.spec`).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes (logits out).
        name: Model name (default the spec's `name`).
    """
    spec = check(spec)
    filters = int(spec.get("filters", 16))
    seed = spec.get("seed")
    seg = segment_of(spec)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = layers.BatchNormalization(name="stem_bn")(x)
    outs = []
    for i, layer in enumerate(spec["layers"]):
        if i > 0 and seg[i] != seg[i - 1]:
            x = layers.AveragePooling2D(2, name=f"pool_{seg[i]}")(x)
        y = _op(x, spec, i, layer, filters, seed)
        if layer.get("skips"):
            y = _merge_skips(y, outs, i, layer["skips"], filters)
        y = _add_addons(y, outs, spec, i)
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
