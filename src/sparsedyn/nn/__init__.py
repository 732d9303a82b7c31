"""Building blocks: gates, masks, vector fields, continuous-depth models."""

from .fields import MLP, GroupedLinear, GroupedMLP, SkipField, activation
from .gates import HardConcrete, add_gate, gate_of, gates, resample_gates
from .masks import Mask, add_mask, mask_of, raw_parameter, squash
from .ode import NeuralODE, SecondOrderODE, replace_field, vector_field
from .prunable import prunable_weights
from .rnn import GATES, RecurrentLayer, RNNStack, recurrent_layers

__all__ = [
    "MLP", "GroupedLinear", "GroupedMLP", "SkipField", "activation",
    "HardConcrete", "add_gate", "gate_of", "gates", "resample_gates",
    "Mask", "add_mask", "mask_of", "raw_parameter", "squash",
    "NeuralODE", "SecondOrderODE", "replace_field", "vector_field", "prunable_weights",
    "GATES", "RecurrentLayer", "RNNStack", "recurrent_layers",
]
