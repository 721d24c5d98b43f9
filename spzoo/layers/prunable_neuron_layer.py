"""The prunable neuron layer (PL): fixed neuron composition, channel mask."""

import math

import numpy as np
from keras import ops, saving

from spzoo.layers.base_neuron import NeuronLayer
from spzoo.layers.trainable_neuron_layer import NEURON_TYPES


def split_channels(total, fractions, argument="fractions"):
    """Splits `total` channels by `fractions` (largest-remainder rounding).

    Returns a list of non-negative integers, one per fraction, summing to
    `total`. Raises `ValueError` naming `argument` if the fractions are
    negative or do not sum to 1.
    """
    fractions = [float(f) for f in fractions]
    if any(f < 0 or math.isnan(f) for f in fractions):
        raise ValueError(
            f"`{argument}` must hold non-negative numbers; received {fractions}."
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"`{argument}` must sum to 1; received {fractions} "
            f"(sum {sum(fractions):.6g})."
        )
    exact = [f * total for f in fractions]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(
        range(len(fractions)), key=lambda i: (counts[i] - exact[i], i)
    )
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


ARRANGEMENTS = ("blocks", "interleaved")


def arrange_types(counts, arrangement: str = "blocks") -> np.ndarray:
    """The neuron type index (0 relu, 1 max, 2 coincidence) of each channel.

    Args:
        counts: Channels of each type, e.g. `split_channels(C, fractions)`.
        arrangement: `"blocks"`: contiguous blocks, all ReLU channels first,
            then max, then coincidence. `"interleaved"`: the types spread
            evenly over the channels (type `t`'s `i`-th channel sits at
            position `(i + 1/2) / counts[t]` of the layer, ties by type), so
            every run of consecutive channels, such as the output of one
            kernel size of a mixed-kernel Op, holds each type in about the
            layer's proportions.
    """
    if arrangement not in ARRANGEMENTS:
        raise ValueError(
            f"`arrangement` must be one of {ARRANGEMENTS}; received {arrangement!r}."
        )
    if arrangement == "blocks":
        return np.repeat(np.arange(len(counts)), counts)
    slots = sorted(((i + 0.5) / n, t) for t, n in enumerate(counts) for i in range(n))
    return np.asarray([t for _, t in slots], dtype="int64")


@saving.register_keras_serializable(package="spzoo")
class PrunableNeuronLayer(NeuronLayer):
    """Prunable neuron layer: channels assigned to neuron types by fractions.

    Lee & Wang, "Pruning NAS Search Space": the first `round(f_relu * C)`
    channels are conventional (ReLU) neurons, the next `round(f_max * C)`
    max neurons, the rest coincidence neurons (`MaxNeuron`,
    `CoincidenceNeuron`: same neighbour shift, zero border). The pruning NAS
    uses `fractions=(1/3, 1/3, 1/3)`; the SP-ResNet uses fixed compositions
    such as `(0.45, 0.40, 0.15)` in its first stack. With
    `arrangement="interleaved"` the same counts are spread evenly over the
    channels instead of in contiguous blocks (see `arrange_types`): in a
    mixed-kernel network, where a channel's kernel size is fixed by its
    position, contiguous blocks tie each neuron type to some kernel sizes.

    A non-trainable `channel_mask` (ones at first) multiplies the output:
    `prune(channels)` zeroes channels, which removes those neurons from the
    network. `l2_importance(kernel)` gives the paper's importance metric
    `phi_c = mean(kernel[..., c] ** 2)`, the mean of the squared weights
    feeding neuron `c` (the kernel of the convolution whose output this layer
    activates).

    Args:
        fractions: Three non-negative numbers summing to 1: the share of
            ReLU, max and coincidence neurons.
        arrangement: `"blocks"` (default) or `"interleaved"`: where each
            type's channels sit (`arrange_types`).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self, fractions=(1 / 3, 1 / 3, 1 / 3), arrangement: str = "blocks", **kwargs
    ):
        super().__init__(**kwargs)
        arrange_types([1], arrangement)  # validates
        fractions = tuple(float(f) for f in fractions)
        if len(fractions) != 3:
            raise ValueError(
                "`fractions` must have 3 entries (relu, max, coincidence); "
                f"received {len(fractions)}: {fractions}."
            )
        split_channels(1, fractions)  # validates
        self.fractions = fractions
        self.arrangement = arrangement

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        channels = input_shape[-1]
        self.type_counts = split_channels(channels, self.fractions)
        type_index = arrange_types(self.type_counts, self.arrangement)
        self._type_index = type_index
        onehot = np.eye(3, dtype="float32")[type_index]
        # Gains per channel: relu -> (1, 0, 0), max -> (1, 1, 0),
        # coincidence -> (0, 0, 1).
        self._linear = onehot[:, 0] + onehot[:, 1]
        self._max = onehot[:, 1]
        self._coincidence = onehot[:, 2]
        self.channel_mask = self.add_weight(
            shape=(channels,),
            name="channel_mask",
            initializer="ones",
            trainable=False,
        )
        self.built = True

    def gains(self):
        mask = ops.cast(self.channel_mask, self.compute_dtype)
        dtype = self.compute_dtype
        return (
            mask * ops.convert_to_tensor(self._linear, dtype),
            mask * ops.convert_to_tensor(self._max, dtype),
            mask * ops.convert_to_tensor(self._coincidence, dtype),
        )

    def neuron_types(self):
        """Returns the neuron type of each channel, e.g. `["relu", ...]`."""
        return [NEURON_TYPES[i] for i in self._type_index]

    def active_channels(self):
        """Returns the indices of channels that are not pruned."""
        return np.flatnonzero(ops.convert_to_numpy(self.channel_mask) > 0)

    def prune(self, channels):
        """Removes neurons: sets `channel_mask` to 0 at `channels`."""
        channels = np.asarray(channels, dtype="int64").reshape(-1)
        size = int(self.channel_mask.shape[0])
        if channels.size and (channels.min() < 0 or channels.max() >= size):
            raise ValueError(
                f"`channels` must be indices in [0, {size}); received "
                f"{channels.tolist()}."
            )
        mask = ops.convert_to_numpy(self.channel_mask).copy()
        mask[channels] = 0.0
        self.channel_mask.assign(mask)

    def l2_importance(self, kernel, fan_in_normalized: bool = False):
        """The L2 importance `phi` of each neuron (Han et al., as the paper).

        Args:
            kernel: The weights feeding this layer's neurons, with output
                channels on the last axis (a Conv2D kernel `(kh, kw, in, C)`
                or a Dense kernel `(in, C)`).
            fan_in_normalized: Return `fan_in * phi` instead, the mean
                squared weight relative to the `1 / fan_in` scale of the
                usual initialisations (He, Glorot): the paper's `phi` shrinks
                as a layer's fan-in grows, so it ranks the neurons of wide
                layers lowest whatever they learned.

        Returns:
            A NumPy `(C,)` array, `mean(kernel[..., c] ** 2)` (times the
            fan-in `kernel.size / C` if `fan_in_normalized`), 0 for pruned
            channels.
        """
        kernel = np.asarray(ops.convert_to_numpy(kernel), dtype="float64")
        size = int(self.channel_mask.shape[0])
        if kernel.ndim < 2 or kernel.shape[-1] != size:
            raise ValueError(
                f"`kernel` must have {size} output channels on its last axis; "
                f"received shape {kernel.shape}."
            )
        phi = np.mean(kernel.reshape(-1, size) ** 2, axis=0)
        if fan_in_normalized:
            phi = phi * (kernel.size // size)
        return phi * (ops.convert_to_numpy(self.channel_mask) > 0)

    def get_config(self):
        config = super().get_config()
        config.update({"fractions": list(self.fractions)})
        if self.arrangement != "blocks":  # configs of earlier files stay as they were
            config["arrangement"] = self.arrangement
        return config
