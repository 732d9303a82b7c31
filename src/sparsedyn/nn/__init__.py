"""Building blocks: gates, masks, vector fields, continuous-depth models."""

from .fields import MLP, GroupedLinear, GroupedMLP, SkipField, activation
from .gates import HardConcrete, add_gate, gate_of, gates, hold_gates, resample_gates
from .masks import Mask, add_mask, mask_of, raw_parameter, squash
from .modes import eval_mode
from .ode import NeuralODE, SecondOrderODE, replace_field, vector_field
from .prunable import prunable_weights
from .rnn import GATES, RecurrentLayer, RNNStack, recurrent_layers
from .sequence_models import PathIntegrationRNN, RNNLanguageModel, SequenceRegressor

__all__ = [
    "MLP", "GroupedLinear", "GroupedMLP", "SkipField", "activation",
    "HardConcrete", "add_gate", "gate_of", "gates", "hold_gates", "resample_gates", "eval_mode",
    "Mask", "add_mask", "mask_of", "raw_parameter", "squash",
    "NeuralODE", "SecondOrderODE", "replace_field", "vector_field", "prunable_weights",
    "GATES", "RecurrentLayer", "RNNStack", "recurrent_layers", "PathIntegrationRNN", "RNNLanguageModel",
    "SequenceRegressor",
]
