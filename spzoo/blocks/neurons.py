"""Neuron specs: the JSON value that names a neuron layer."""

from keras import layers

from spzoo.layers import (
    CoincidenceNeuron,
    MaxNeuron,
    PrunableNeuronLayer,
    TrainableNeuronLayer,
)

# The neuron layers a spec names (`"relu"` without options is Keras's ReLU).
NEURON_LAYERS = {
    "max": MaxNeuron,
    "coincidence": CoincidenceNeuron,
    "trainable": TrainableNeuronLayer,
    "prunable": PrunableNeuronLayer,
}
NEURON_NAMES = ("relu", *NEURON_LAYERS)


def neuron_layer(neuron, name: str | None = None) -> layers.Layer:
    """Builds the neuron (activation) layer that `neuron` names.

    Args:
        neuron: One of
            - `"relu"`, `"max"`, `"coincidence"`: one neuron type everywhere;
            - `"trainable"`: a `TrainableNeuronLayer` (softmax mixture);
            - `"prunable"`: a `PrunableNeuronLayer` with equal thirds;
            - a list of 3 fractions `[relu, max, coincidence]` summing to 1:
              a `PrunableNeuronLayer` with that fixed composition;
            - a dict `{"type": <one of the names above>, **layer_kwargs}`,
              e.g. `{"type": "trainable", "weight_scale": 10.0}`.
        name: Layer name.

    Returns:
        A Keras layer.
    """
    if isinstance(neuron, (list, tuple)):
        return PrunableNeuronLayer(fractions=neuron, name=name)
    kwargs = {}
    if isinstance(neuron, dict):
        kwargs = {k: v for k, v in neuron.items() if k != "type"}
        neuron = neuron.get("type")
    if neuron == "relu" and not kwargs:
        return layers.ReLU(name=name)
    if neuron not in NEURON_LAYERS:
        raise ValueError(
            f"Unknown `neuron` {neuron!r}; expected one of {NEURON_NAMES}, a "
            "list of 3 fractions [relu, max, coincidence], or a dict with a "
            "'type' key."
        )
    return NEURON_LAYERS[neuron](name=name, **kwargs)


def check_neuron(neuron, argument: str = "neuron") -> None:
    """Raises a clear `ValueError` if `neuron` is not a valid neuron spec."""
    try:
        neuron_layer(neuron)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Invalid `{argument}`: {error}") from None
