"""Tasks: data, loss and evaluation, one file per task; importing this package registers them all.

Each task module defines its config section and registers its task class (see :mod:`.base`);
``TASKS`` maps a config's ``task.name`` to the class.
"""

from . import (  # noqa: F401
    adding,
    hematopoiesis_task,
    krumsiek,
    krumsiek_interventions,
    language,
    mocap_task,
    navigation,
    systems_task,
    trajectories_task,
)
from .adding import AddingTask
from .base import TASKS, Task, TaskConfig, register_task
from .hematopoiesis_task import HematopoiesisTask
from .krumsiek import KrumsiekTask
from .krumsiek_interventions import KrumsiekInterventionsTask
from .language import LanguageTask
from .mocap_task import MocapTask
from .navigation import NavigationTask
from .systems import (
    SYSTEMS,
    CoupledOscillators,
    DynamicalSystem,
    FitzHughNagumo,
    Kuramoto,
    Lorenz96,
    LotkaVolterra,
    SparseLinear,
    SparseTanh,
    make_system,
)
from .systems_task import OOD_SPLITS, SystemTask
from .trajectories import Trajectories, masked_mse
from .trajectories_task import TrajectoriesTask
from .user_data import DataError, Series, from_arrays, load_series

__all__ = [
    "TASKS", "Task", "TaskConfig", "register_task", "SystemTask", "NavigationTask", "AddingTask",
    "LanguageTask", "MocapTask", "HematopoiesisTask", "KrumsiekTask", "KrumsiekInterventionsTask", "OOD_SPLITS",
    "SYSTEMS",
    "DynamicalSystem", "SparseLinear", "LotkaVolterra", "Lorenz96", "SparseTanh", "CoupledOscillators", "Kuramoto",
    "FitzHughNagumo",
    "make_system", "Trajectories", "masked_mse", "TrajectoriesTask", "DataError", "Series", "from_arrays",
    "load_series",
]
