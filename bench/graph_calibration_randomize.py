"""Calibration of ``SparseGraph.edge_probability_`` with the randomised lasso (``randomize`` 1 = off, 0.5, 0.2),
on the graph benchmark's data sets of some families (every regime, seed 0); one CSV row per fit.

    python bench/graph_calibration_randomize.py dysts 4 out.csv      # families, instances per family, output
"""

from __future__ import annotations

import csv
import sys
import warnings

import numpy as np
import torch

from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import REGIMES, make_dataset

ALPHAS = (1.0, 0.5, 0.2)


def main(families: list[str], instances: int, out: str) -> None:
    torch.set_num_threads(1)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["family", "instance", "regime", "alpha", "edges_p90", "true_p90", "true_edges"])
        for fam in families:
            for reg in REGIMES:
                for inst in range(instances):
                    data = make_dataset(fam, inst, REGIMES[reg], 0)
                    off = ~np.eye(len(data.truth), dtype=bool)
                    for alpha in ALPHAS:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", GraphWarning)
                            est = SparseGraph(seed=0, randomize=alpha).fit(data.train.values, t=data.train.times)
                        confident = est.edge_probability_[off] >= 0.9
                        writer.writerow([fam, inst, reg, alpha, int(confident.sum()),
                                         int((confident & data.truth[off]).sum()), int(data.truth[off].sum())])
                        f.flush()
                    print(fam, reg, inst, flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3])
