"""sparsedyn: sparse recurrent and continuous-depth neural networks.

Methods share one protocol (``prepare``, ``penalty``, ``after_step``, ``on_epoch_end``)::

    method = sparsedyn.PathReg(lambda_paths=1e-3, lambda_weights=1e-4)
    model = method.prepare(sparsedyn.NeuralODE(sparsedyn.MLP(n, n)))
    loss = task_loss + method.penalty(model)   # step; method.after_step(model, lr)
"""

from . import analysis as _analysis
from . import methods as _methods
from . import nn as _nn
from . import tasks as _tasks
from .analysis import *  # noqa: F403
from .config import ConfigError, ExperimentConfig, load_config, parse_config
from .estimator import SparseODE
from .graph import SparseGraph
from .methods import *  # noqa: F403
from .nn import *  # noqa: F403
from .runner import run_experiment
from .tasks import *  # noqa: F403
from .train import Trainer, TrainSettings

try:  # the one source of the version: the installed package's metadata (pyproject.toml)
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("sparsedyn")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree that was never installed
    __version__ = "0+unknown"

# Everything the sub-packages export (every registered method and task class, every model and
# layer), built from their own lists so nothing named in the docs can be missing here.
__all__ = [*_analysis.__all__, *_methods.__all__, *_nn.__all__, *_tasks.__all__, "ConfigError",
           "ExperimentConfig", "load_config", "parse_config", "run_experiment", "Trainer", "TrainSettings",
           "SparseODE", "SparseGraph", "__version__"]
