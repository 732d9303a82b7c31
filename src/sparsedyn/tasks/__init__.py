"""Tasks: data, loss and evaluation, one file per task."""

from .system_task import OOD_SPLITS, SystemTask
from .systems import (
    SYSTEMS,
    CoupledOscillators,
    DynamicalSystem,
    Lorenz96,
    LotkaVolterra,
    SparseLinear,
    SparseTanh,
    make_system,
)
from .trajectories import Trajectories, masked_mse

__all__ = [
    "SystemTask", "OOD_SPLITS", "SYSTEMS", "DynamicalSystem", "SparseLinear", "LotkaVolterra",
    "Lorenz96", "SparseTanh", "CoupledOscillators", "make_system", "Trajectories", "masked_mse",
]
