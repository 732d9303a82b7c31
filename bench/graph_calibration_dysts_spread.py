"""Is the dysts family's miscalibration the data's (every trajectory on one attractor) or the estimator's?

``SparseGraph.edge_probability_`` of the dysts family's fits (seed 0) with the initial states jittered off
the attractor by 1% (the benchmark's setting) and by 30% of each variable's spread: one CSV row per fit
with the number of edges at probability >= 0.9, how many of them are true, and the off-diagonal AUROC.

    python bench/graph_calibration_dysts_spread.py 4 standard,noisy,few_trajectories out.csv
"""

from __future__ import annotations

import csv
import sys
import warnings

import numpy as np
import torch

from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import REGIMES, edge_metrics, make_dataset
from sparsedyn.tasks.graph_systems import DystsFlow

SPREADS = (0.01, 0.3)


def main(instances: int, regimes: list[str], out: str) -> None:
    torch.set_num_threads(1)
    original = DystsFlow._x0
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["instance", "flow", "regime", "spread", "edges_p90", "true_p90", "true_edges", "auroc"])
        for spread in SPREADS:
            def x0(self, rng, k, spread=spread):
                points = self._attractor[rng.integers(0, len(self._attractor), k)]
                return points + spread * self._attractor.std(axis=0) * rng.standard_normal(points.shape)

            DystsFlow._x0 = x0
            try:
                for reg in regimes:
                    for inst in range(instances):
                        data = make_dataset("dysts", inst, REGIMES[reg], 0)
                        off = ~np.eye(len(data.truth), dtype=bool)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", GraphWarning)
                            est = SparseGraph(seed=0).fit(data.train.values, t=data.train.times)
                        confident = est.edge_probability_[off] >= 0.9
                        writer.writerow([inst, data.system.flow, reg, spread, int(confident.sum()),
                                         int((confident & data.truth[off]).sum()), int(data.truth[off].sum()),
                                         round(edge_metrics(est.graph_, data.truth)["auroc"], 4)])
                        f.flush()
                        print(spread, reg, inst, flush=True)
            finally:
                DystsFlow._x0 = original


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3])
