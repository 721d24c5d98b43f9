"""Neuron layers of spzoo."""

from spzoo.layers.coincidence_neuron import CoincidenceNeuron
from spzoo.layers.hard_concrete_gate import (
    HardConcreteGate,
    closed_bound,
    get_threshold,
    open_probability,
    set_threshold,
    threshold_for_open_probability,
    threshold_scope,
)
from spzoo.layers.inhibition_conv2d import InhibitionConv2D
from spzoo.layers.max_neuron import MaxNeuron
from spzoo.layers.neuron_response import neuron_response, reference_response, shift
from spzoo.layers.presynaptic_gate import ChannelGate, PresynapticGate
from spzoo.layers.prunable_neuron_layer import PrunableNeuronLayer, split_channels
from spzoo.layers.smooth_init import (
    SmoothInit,
    WholeMapDepthwisePooling,
    gaussian_kernel,
    smooth_kernels,
)
from spzoo.layers.switchable_batch_norm import (
    SwitchableBatchNormalization,
    calibration_scope,
)
from spzoo.layers.trainable_neuron_layer import NEURON_TYPES, TrainableNeuronLayer

__all__ = [
    "NEURON_TYPES",
    "ChannelGate",
    "CoincidenceNeuron",
    "HardConcreteGate",
    "InhibitionConv2D",
    "MaxNeuron",
    "PresynapticGate",
    "PrunableNeuronLayer",
    "SmoothInit",
    "SwitchableBatchNormalization",
    "TrainableNeuronLayer",
    "WholeMapDepthwisePooling",
    "calibration_scope",
    "closed_bound",
    "gaussian_kernel",
    "get_threshold",
    "neuron_response",
    "open_probability",
    "reference_response",
    "set_threshold",
    "shift",
    "smooth_kernels",
    "split_channels",
    "threshold_for_open_probability",
    "threshold_scope",
]
