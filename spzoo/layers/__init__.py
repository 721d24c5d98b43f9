"""Neuron layers of spzoo."""

from spzoo.layers.coincidence_neuron import CoincidenceNeuron
from spzoo.layers.max_neuron import MaxNeuron
from spzoo.layers.neuron_response import neuron_response, reference_response, shift
from spzoo.layers.prunable_neuron_layer import PrunableNeuronLayer, split_channels
from spzoo.layers.trainable_neuron_layer import NEURON_TYPES, TrainableNeuronLayer

__all__ = [
    "NEURON_TYPES",
    "CoincidenceNeuron",
    "MaxNeuron",
    "PrunableNeuronLayer",
    "TrainableNeuronLayer",
    "neuron_response",
    "reference_response",
    "shift",
    "split_channels",
]
