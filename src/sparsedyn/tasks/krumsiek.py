"""The Krumsiek et al. (2011) myeloid progenitor network, simulated by scanpy (optional extra).

scanpy ships the model (``scanpy/sim_models/krumsiek11.txt``: 11 transcription factors, boolean
rules and a 30-entry coupling list) and simulates it offline with ``scanpy.tl.sim`` (a
stochastic Hill-type ODE; realisations branch into erythroid, megakaryocyte, monocyte and
neutrophil fates). The ground truth ``G[i, j] = 1`` iff factor ``j`` appears in factor ``i``'s
couplings. Because realisations that start from the same root state branch apart, a
deterministic NODE is fitted on **windows** of ``window`` saved steps cut from them (every
window starts from its own observed state), the usual multiple-shooting treatment of a
stochastic system. Install with ``pip install sparsedyn[singlecell]``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from .. import io
from .base import TaskConfig, register_task
from .forecast import ForecastTask
from .trajectories import Trajectories

MODEL = "krumsiek11"


def _scanpy():
    try:
        import scanpy
    except ImportError:
        raise ImportError("the Krumsiek task needs scanpy: pip install 'sparsedyn[singlecell]'") from None
    return scanpy


def model_file() -> Path:
    return Path(_scanpy().__file__).parent / "sim_models" / f"{MODEL}.txt"


def parse_couplings(text: str) -> tuple[list[str], np.ndarray]:
    """Genes (in rule order) and the adjacency ``G[target, source]`` of a scanpy sim-model file."""
    genes, edges, section = [], [], "rules"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("# coupling list"):
            section = "couplings"
        if not line or line.startswith("#"):
            continue
        if section == "rules":
            if "=" not in line:
                raise ValueError(f"line {n}: expected 'gene = rule', got {line!r}")
            genes.append(line.split("=", 1)[0].strip())
        else:
            words = line.split()
            if len(words) != 3:
                raise ValueError(f"line {n}: expected 'target source weight', got {line!r}")
            edges.append((words[0], words[1]))
    index = {g: i for i, g in enumerate(genes)}
    G = np.zeros((len(genes), len(genes)), dtype=bool)
    for target, source in edges:
        if target not in index or source not in index:
            raise ValueError(f"coupling {target} <- {source} names a gene without a rule")
        G[index[target], index[source]] = True
    return genes, G


def simulate(n_realizations: int, seed: int, cache_dir: str | Path | None = None) -> np.ndarray:
    """``(n_realizations, steps, 11)`` trajectories from ``scanpy.tl.sim`` (cached on disk by seed)."""
    cache = Path(cache_dir or os.environ.get("SPARSEDYN_CACHE") or Path.home() / ".cache" / "sparsedyn")
    path = cache / f"{MODEL}_r{n_realizations}_s{seed}.npy"
    if path.exists():
        return np.load(path)
    sc = _scanpy()
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Observation names are not unique")  # one name per time step
        adata = sc.tl.sim(MODEL, nrRealizations=n_realizations, seed=seed, branching=False, writedir=d)
    X = np.asarray(adata.X, dtype=np.float64).reshape(n_realizations, -1, adata.shape[1])
    io.save_numpy(path, X)
    return X


class KrumsiekTaskConfig(TaskConfig):
    """Krumsiek et al. 2011 myeloid network via scanpy.tl.sim (extra ``singlecell``)."""

    name: Literal["krumsiek"]
    n_realizations: int = Field(16, ge=3)
    window: int = Field(20, ge=2)
    stride: int = Field(10, ge=1)
    dt: float = Field(0.1, gt=0)
    data_seed: int = Field(0, ge=0)


@register_task
class KrumsiekTask(ForecastTask[KrumsiekTaskConfig]):
    """Learn the myeloid network's dynamics from simulated windows; ``truth`` is its 30-edge graph."""

    name = "krumsiek"
    Config = KrumsiekTaskConfig
    model_kinds = ("node", "sindy")

    def setup(self) -> None:
        """Windows of the simulated realisations (cached under ``$SPARSEDYN_CACHE``, default
        ``~/.cache/sparsedyn``): the last eighth of realisations for test, the eighth before for val."""
        c = self.config
        n_realizations, window, stride, dt = c.n_realizations, c.window, c.stride, c.dt
        self.genes, self._truth = parse_couplings(model_file().read_text())
        X = simulate(n_realizations, c.data_seed)
        n_val = n_test = max(1, n_realizations // 8)
        groups = {"train": X[:n_realizations - n_val - n_test], "val": X[n_realizations - n_val - n_test:
                  n_realizations - n_test], "test": X[n_realizations - n_test:]}
        t = torch.arange(window, dtype=torch.float32) * dt
        self.splits = {}
        for name, reals in groups.items():
            wins = np.stack([r[s:s + window] for r in reals for s in range(0, r.shape[0] - window + 1, stride)])
            y = torch.tensor(wins, dtype=torch.float32)
            self.splits[name] = Trajectories(t, y, torch.ones(y.shape[:2], dtype=torch.bool))

    @property
    def n_observed(self) -> int:
        return len(self.genes)

    @property
    def truth(self) -> np.ndarray:
        return self._truth
