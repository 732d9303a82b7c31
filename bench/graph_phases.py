"""Phase-coupled oscillators: every tool on the raw phases, and SparseGraph(periodic=...) against the peer given
the same cosine and sine features.

Kuramoto oscillators (``dtheta_i/dt = omega_i + K sum_j A_ij sin(theta_j - theta_i)``, 8 phases, 2 parents
each, instance seeds 200+: a system none of the library's defaults was chosen on) observed as the graph
benchmark observes its families (:mod:`sparsedyn.graph_benchmark`: the regimes, noise relative to each
feature's spread, the last quarter of the trajectories held out). Methods: the four peers of
``bench/graph_recovery.py`` on the unwrapped phases; ``sparsegraph`` (defaults) on them; ``sparsegraph_periodic``
(``SparseGraph(periodic=all)``: cosines and sines in the library); and ``lasso_trig``, LassoCV per output on
degree-2 products of the cosines and sines (standardised; folds over trajectories; an edge scores the summed
|coefficients| of the terms with either feature of the source): the peer given by hand what ``periodic`` gives.

    python bench/graph_phases.py --out rows.jsonl [--regimes standard,few_points] [--instances 2] [--seed 0]
    python bench/graph_phases.py --tables rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # graph_recovery, beside this file
from graph_recovery import run_one  # noqa: E402
from sparsedyn.derivatives import derivative_data
from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, edge_metrics, forecast_r2, make_dataset
from sparsedyn.tasks.systems import make_system

FAMILY = "kuramoto"
PEERS = ("lasso_linear", "lasso_poly", "sindy", "trees", "sparsegraph")
METHODS = (*PEERS, "sparsegraph_periodic", "lasso_trig")


def lasso_trig(data) -> dict:
    """LassoCV on degree-2 products of the phases' cosines and sines (the peer with ``periodic``'s features)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import GroupKFold

    deriv = derivative_data(data.train)
    start = time.process_time()
    n = deriv.x.shape[1]
    lifted = np.concatenate([np.cos(deriv.x), np.sin(deriv.x)], axis=1)
    owner = np.arange(2 * n) % n
    j, k = np.triu_indices(2 * n)
    features = np.concatenate([lifted, lifted[:, j] * lifted[:, k]], axis=1)
    owners = [{owner[a]} for a in range(2 * n)] + [{owner[a], owner[b]} for a, b in zip(j, k)]
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    folds = list(GroupKFold(n_splits=5).split(features, groups=deriv.trajectory))
    scores = np.zeros((n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(n):
            coef = LassoCV(cv=folds, random_state=0, max_iter=5000).fit(features, deriv.dxdt[:, i]).coef_
            for c, sources in zip(coef, owners):
                for source in sources:
                    scores[i, source] += abs(c)
    return {**edge_metrics(scores, data.truth), "seconds": time.process_time() - start}


def sparsegraph_periodic(data, seed: int) -> dict:
    n = data.truth.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        est = SparseGraph(seed=seed, periodic=list(range(n))).fit(data.train.values, t=data.train.times)
        row = {**edge_metrics(est.graph_, data.truth), "seconds": est.fit_seconds_,
               "r2": forecast_r2(est.simulate, data.test)}
    off = ~np.eye(n, dtype=bool)
    confident = est.edge_probability_[off] >= 0.9
    row["edges_p90"], row["true_p90"] = int(confident.sum()), int((confident & data.truth[off]).sum())
    return row


def tables(rows: list[dict]) -> str:
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = []
    for key in ("auroc", "r2", "seconds"):
        lines += [f"| regime ({key}, mean over instances) | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for regime in regimes:
            cells = []
            for m in methods:
                v = [r[key] for r in rows if r["regime"] == regime and r["method"] == m and key in r]
                cells.append(f"{np.mean(np.clip(v, -1, None) if key == 'r2' else v):.3f}" if v else "")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    periodic = [r for r in rows if r["method"] == "sparsegraph_periodic"]
    edges, true = sum(r["edges_p90"] for r in periodic), sum(r["true_p90"] for r in periodic)
    if edges:
        lines.append(f"sparsegraph_periodic: {true} of {edges} edges with probability >= 0.9 are true "
                     f"({100 * true / edges:.1f}%)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="graph_phases.jsonl")
    ap.add_argument("--regimes", default="standard,few_points,noisy,few_trajectories")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", default="", help="only print the tables of these JSONL files (comma-separated)")
    args = ap.parse_args()
    if args.tables:
        print(tables([json.loads(line) for f in args.tables.split(",") for line in Path(f).read_text().splitlines()]))
        return
    torch.set_num_threads(1)
    FAMILIES[FAMILY] = (lambda s: make_system("kuramoto", n=8, parents=2, K=1.0, seed=200 + s), 10.0)
    print(f"# graph_phases: {platform.machine()}, torch {torch.__version__}, 1 thread", flush=True)
    rows = []
    with open(args.out, "a") as out:
        for regime in args.regimes.split(","):
            for instance in range(args.instances):
                data = make_dataset(FAMILY, instance, REGIMES[regime], args.seed)
                for method in METHODS:
                    if method == "lasso_trig":
                        row = lasso_trig(data)
                    elif method == "sparsegraph_periodic":
                        row = sparsegraph_periodic(data, args.seed)
                    else:
                        row = run_one(method, data, args.seed)
                    row.update(family=FAMILY, regime=regime, instance=instance, seed=args.seed, method=method)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{regime} {instance} {method}: AUROC {row['auroc']:.3f}, {row['seconds']:.1f} s", flush=True)
    print(tables(rows))


if __name__ == "__main__":
    main()
