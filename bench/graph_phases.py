"""Phase-coupled oscillators: every tool on the raw phases, and SparseGraph(periodic=...) against the peer given
the same cosine and sine features.

Two families none of the library's defaults was chosen on: Kuramoto oscillators (``dtheta_i/dt = omega_i + K
sum_j A_ij sin(theta_j - theta_i)``, 8 phases, 2 parents each, instance seeds 200+), and damped pendulums coupled
through their angles (state ``[theta_1..theta_m, omega_1..omega_m]``, ``dtheta_i/dt = omega_i``, ``domega_i/dt =
-sin theta_i - 0.1 omega_i + sum_j A_ij sin(theta_j - theta_i)``, 5 pendulums with 1-2 parents, instance seeds
300+: angles periodic, angular velocities not), observed as the graph benchmark observes its families
(:mod:`sparsedyn.graph_benchmark`: the regimes, noise relative to each feature's spread, the last quarter of
the trajectories held out). Methods: the four peers of
``bench/graph_recovery.py`` on the unwrapped phases; ``sparsegraph`` (defaults) on them; ``sparsegraph_periodic``
(``SparseGraph(periodic=...)`` with the angles: their cosines and sines in the library); and ``lasso_trig``,
LassoCV per output on the angles' cosines and sines, the other variables, and their degree-2 products
(standardised; folds over trajectories; an edge scores the summed |coefficients| of the terms with a feature of
the source): the peer given by hand what ``periodic`` gives.

    python bench/graph_phases.py --out rows.jsonl [--families kuramoto,pendulums] [--regimes standard,few_points]
        [--instances 2] [--seed 0]
    python bench/graph_phases.py --tables rows.jsonl
    python bench/graph_phases.py --figure pendulums.png   # SparseGraph(periodic=angles) on pendulums, instance 0
"""

from __future__ import annotations

import argparse
import itertools
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
from sparsedyn.tasks.systems import DynamicalSystem, make_system


class CoupledPendulums(DynamicalSystem):
    """Damped pendulums coupled through the sines of their angle differences (see the module docstring)."""

    def __init__(self, m: int = 5, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.m, self.n = m, 2 * m
        self.A = np.zeros((m, m))
        for i in range(m):
            parents = rng.choice([j for j in range(m) if j != i], size=int(rng.integers(1, 3)), replace=False)
            self.A[i, parents] = rng.uniform(0.5, 1.0, len(parents))
        eye = np.eye(m, dtype=bool)
        self.adjacency = np.block([[np.zeros((m, m), bool), eye], [(self.A != 0) | eye, eye]])

    def f(self, x: np.ndarray) -> np.ndarray:
        theta, omega = x[:, :self.m], x[:, self.m:]
        coupling = (self.A[None] * np.sin(theta[:, None, :] - theta[:, :, None])).sum(axis=2)
        return np.concatenate([omega, -np.sin(theta) - 0.1 * omega + coupling], axis=1)

    def _x0(self, rng: np.random.Generator, k: int) -> np.ndarray:
        return np.concatenate([rng.uniform(-np.pi, np.pi, (k, self.m)), rng.uniform(-1, 1, (k, self.m))], axis=1)


SYSTEMS = {  # family -> (system from an instance seed, time span, the periodic columns of an instance)
    "kuramoto": (lambda s: make_system("kuramoto", n=8, parents=2, K=1.0, seed=200 + s), 10.0, range(8)),
    "pendulums": (lambda s: CoupledPendulums(m=5, seed=300 + s), 15.0, range(5)),
}
PEERS = ("lasso_linear", "lasso_poly", "sindy", "trees", "sparsegraph")
METHODS = (*PEERS, "sparsegraph_periodic", "lasso_trig")


def lasso_trig(data, periodic: list[int]) -> dict:
    """LassoCV on the angles' cosines and sines, the other variables, and their degree-2 products (the peer with
    ``periodic``'s features)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import GroupKFold

    deriv = derivative_data(data.train)
    start = time.process_time()
    n = deriv.x.shape[1]
    plain = [j for j in range(n) if j not in periodic]
    x = deriv.x
    lifted = np.concatenate([np.cos(x[:, periodic]), np.sin(x[:, periodic]), x[:, plain]], axis=1)
    owner = np.array([*periodic, *periodic, *plain])
    j, k = np.triu_indices(len(owner))
    features = np.concatenate([lifted, lifted[:, j] * lifted[:, k]], axis=1)
    owners = [{owner[a]} for a in range(len(owner))] + [{owner[a], owner[b]} for a, b in zip(j, k)]
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


def sparsegraph_periodic(data, seed: int, periodic: list[int]) -> dict:
    n = data.truth.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        est = SparseGraph(seed=seed, periodic=periodic).fit(data.train.values, t=data.train.times)
        row = {**edge_metrics(est.graph_, data.truth), "seconds": est.fit_seconds_,
               "r2": forecast_r2(est.simulate, data.test)}
    off = ~np.eye(n, dtype=bool)
    confident = est.edge_probability_[off] >= 0.9
    row["edges_p90"], row["true_p90"] = int(confident.sum()), int((confident & data.truth[off]).sum())
    return row


def tables(rows: list[dict]) -> str:
    cells_of = list(dict.fromkeys((r.get("family", "kuramoto"), r["regime"]) for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = []
    for key in ("auroc", "r2", "seconds"):
        lines += [f"| family | regime ({key}, mean over instances and seeds) | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        for family, regime in cells_of:
            cells = []
            for m in methods:
                v = [r[key] for r in rows if (r.get("family", "kuramoto"), r["regime"]) == (family, regime)
                     and r["method"] == m and key in r]
                cells.append(f"{np.mean(np.clip(v, -1, None) if key == 'r2' else v):.3f}" if v else "")
            lines.append(f"| {family} | {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    for family in dict.fromkeys(f for f, _ in cells_of):
        periodic = [r for r in rows if r["method"] == "sparsegraph_periodic" and r.get("family", "kuramoto") == family]
        edges, true = sum(r["edges_p90"] for r in periodic), sum(r["true_p90"] for r in periodic)
        if edges:
            lines.append(f"{family}, sparsegraph_periodic: {true} of {edges} edges with probability >= 0.9 are "
                         f"true ({100 * true / edges:.1f}%)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="graph_phases.jsonl")
    ap.add_argument("--families", default="kuramoto")
    ap.add_argument("--regimes", default="standard,few_points,noisy,few_trajectories")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", default="", help="only print the tables of these JSONL files (comma-separated)")
    ap.add_argument("--figure", default="", help="only draw SparseGraph(periodic=angles)'s figure for the first "
                                                 "family, standard regime, instance 0, to this PNG")
    args = ap.parse_args()
    if args.tables:
        print(tables([json.loads(line) for f in args.tables.split(",") for line in Path(f).read_text().splitlines()]))
        return
    torch.set_num_threads(1)
    if args.figure:
        family = args.families.split(",")[0]
        factory, span, columns = SYSTEMS[family]
        FAMILIES[family] = (factory, span)
        data = make_dataset(family, 0, REGIMES["standard"], args.seed)
        est = SparseGraph(seed=args.seed, periodic=list(columns)).fit(data.train.values, t=data.train.times)
        est.plot(args.figure, data.test, truth=data.truth)
        print(f"wrote {args.figure}: AUROC {edge_metrics(est.graph_, data.truth)['auroc']:.3f}")
        return
    print(f"# graph_phases: {platform.machine()}, torch {torch.__version__}, 1 thread", flush=True)
    rows = []
    with open(args.out, "a") as out:
        for family in args.families.split(","):
            factory, span, columns = SYSTEMS[family]
            FAMILIES[family] = (factory, span)
            periodic = list(columns)
            for regime, instance in itertools.product(args.regimes.split(","), range(args.instances)):
                data = make_dataset(family, instance, REGIMES[regime], args.seed)
                for method in METHODS:
                    if method == "lasso_trig":
                        row = lasso_trig(data, periodic)
                    elif method == "sparsegraph_periodic":
                        row = sparsegraph_periodic(data, args.seed, periodic)
                    else:
                        row = run_one(method, data, args.seed)
                    row.update(family=family, regime=regime, instance=instance, seed=args.seed, method=method)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{family} {regime} {instance} {method}: AUROC {row['auroc']:.3f}, {row['seconds']:.1f} s",
                          flush=True)
    print(tables(rows))


if __name__ == "__main__":
    main()
