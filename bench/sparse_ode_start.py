"""SparseODE's derivative start against a cold start: dense fits on benchmark systems, side by side.

Each family's instance 0 in the standard regime (``sparsedyn.graph_benchmark``), seed 0, ``SparseODE(method=
"vanilla")`` with its defaults and ``derivative_steps`` 0 (cold) and 500 (the default): forecast R^2 of the held-out
trajectories (clipped at -1), R^2 on the training trajectories, off-diagonal AUROC of ``jacobian_scores_``, CPU s.

    python bench/sparse_ode_start.py --families hill,glv [--steps 0,500]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import torch

from sparsedyn import SparseODE
from sparsedyn.graph_benchmark import REGIMES, edge_metrics, forecast_r2, make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="hill,glv,hyper_rossler,sparse_tanh")
    ap.add_argument("--steps", default="0,500")
    args = ap.parse_args()
    print(f"# sparse_ode_start: {platform.machine()}, torch {torch.__version__}", flush=True)
    for family in args.families.split(","):
        data = make_dataset(family, 0, REGIMES["standard"], 0)
        for steps in map(int, args.steps.split(",")):
            start = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = SparseODE(method="vanilla", derivative_steps=steps).fit(data.train.values,
                                                                                t=data.train.times[0])
            print(json.dumps({"family": family, "derivative_steps": steps,
                              "jacobian_auroc": round(edge_metrics(model.jacobian_scores_, data.truth)["auroc"], 3),
                              "test_r2": round(max(forecast_r2(model.simulate, data.test), -1.0), 3),
                              "train_r2": round(model.train_score_, 3),
                              "cpu_s": round(time.process_time() - start)}), flush=True)


if __name__ == "__main__":
    main()
