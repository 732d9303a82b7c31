"""``SparseODE``'s default strength: PathReg at an absolute 1e-3 (the default until 2026-12-07) against strengths
relative to the initial data loss (0.01, the new default; 0.03; 0.1) and the dense vanilla fit, on instance 0
of benchmark families in the standard regime (``sparsedyn.graph_benchmark``), seed 0, one thread. One row per
family and setting: CPU seconds, training and test forecast R^2, Jacobian AUROC, weight sparsity.

    python bench/sparse_ode_strength.py --families hill,sparse_tanh --out rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from sparsedyn import SparseODE
from sparsedyn.graph_benchmark import REGIMES, edge_metrics, make_dataset

SETTINGS = {
    "absolute 1e-3 (old default)": {"strength": 1e-3, "relative_strength": False},
    "vanilla": {"method": "vanilla"},
    "relative 0.01": {"strength": 0.01, "relative_strength": True},
    "relative 0.03": {"strength": 0.03, "relative_strength": True},
    "relative 0.1": {"strength": 0.1, "relative_strength": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="hill,sparse_tanh,glv,hyper_rossler")
    ap.add_argument("--out", default="sparse_ode_strength.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.out, "a") as out:
        for family in args.families.split(","):
            data = make_dataset(family, 0, REGIMES["standard"], 0)
            for label, options in SETTINGS.items():
                start = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = SparseODE(**options).fit(data.train.values, t=data.train.times)
                row = {"family": family, "setting": label, "cpu": round(time.process_time() - start, 1),
                       "train_r2": round(est.train_score_, 3),
                       "test_r2": round(est.score(data.test.values, t=data.test.times), 3),
                       "auroc": round(edge_metrics(np.asarray(est.jacobian_scores_), data.truth)["auroc"], 3),
                       "weight_sparsity": round(est.weight_sparsity_, 3)}
                print(row, flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()


if __name__ == "__main__":
    main()
