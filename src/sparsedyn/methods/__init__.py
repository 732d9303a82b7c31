"""Sparsity methods, one per file, all with the same four hooks (see ``base``)."""

from .base import Compose, Method
from .cnode import CNODE, path_weight_matrix
from .group_lasso import GroupLasso, group_soft_threshold
from .hier_prox import hier_prox
from .l0 import L0
from .l1 import L1
from .lassonet import LassoNet
from .magnitude import MagnitudePruning, prune_to, schedule_sparsity
from .moduli import Moduli
from .pathreg import PathReg, expected_paths
from .registry import METHODS, build_method

__all__ = [
    "Method", "Compose", "L1", "L0", "PathReg", "CNODE", "GroupLasso", "LassoNet",
    "MagnitudePruning", "Moduli", "hier_prox", "prune_to", "schedule_sparsity", "expected_paths",
    "path_weight_matrix", "group_soft_threshold", "METHODS", "build_method",
]
