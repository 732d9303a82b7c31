"""sparsedyn: sparse recurrent and continuous-depth neural networks.

Methods share one protocol (``prepare``, ``penalty``, ``after_step``, ``on_epoch_end``)::

    method = sparsedyn.PathReg(lambda_paths=1e-3, lambda_weights=1e-4)
    model = method.prepare(sparsedyn.NeuralODE(sparsedyn.MLP(n, n)))
    loss = task_loss + method.penalty(model)   # step; method.after_step(model, lr)
"""

from .analysis import (
    dependency_matrix,
    effective_weights,
    feature_sparsity,
    jacobian_scores,
    path_scores,
    recovery_metrics,
    weight_sparsity,
)
from .config import ConfigError, ExperimentConfig, load_config, parse_config
from .methods import (
    CNODE,
    L0,
    L1,
    Compose,
    GroupLasso,
    LassoNet,
    MagnitudePruning,
    Method,
    PathReg,
    hier_prox,
)
from .nn import MLP, GroupedMLP, HardConcrete, NeuralODE, SecondOrderODE, SkipField
from .runner import run_experiment
from .tasks import SYSTEMS, SystemTask, make_system
from .train import Trainer, TrainSettings

__version__ = "0.1.0"

__all__ = [
    "dependency_matrix", "effective_weights", "feature_sparsity", "jacobian_scores", "path_scores",
    "recovery_metrics", "weight_sparsity", "ConfigError", "ExperimentConfig", "load_config",
    "parse_config", "CNODE", "L0", "L1", "Compose", "GroupLasso", "LassoNet", "MagnitudePruning",
    "Method", "PathReg", "hier_prox", "MLP", "GroupedMLP", "HardConcrete", "NeuralODE",
    "SecondOrderODE", "SkipField", "run_experiment", "SYSTEMS", "SystemTask", "make_system",
    "Trainer", "TrainSettings", "__version__",
]
