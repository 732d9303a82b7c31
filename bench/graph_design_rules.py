"""How should SparseGraph combine its two designs? Every rule scored on the same fits.

``SparseGraph(design="auto")`` fits smoothed derivatives and difference quotients and keeps one
(``design_``). This bench fits it once per benchmark data set and scores, from the fitted estimator's
``design_graphs_`` and ``design_errors_``, alternative rules side by side: each design alone, the shipped
one-standard-error switch, the switch on the mean gap alone, and averages of the two designs' graphs (each
scaled to its largest off-diagonal score; equal weights, or weights 1 / one-step error, squared). Mean
off-diagonal AUROC per regime, and over the six hard regimes; rows to a CSV.

    python bench/graph_design_rules.py --families hill,glv --instances 2 --out rules.csv
    python bench/graph_design_rules.py --first-instance 2 ...      # held-out instances
"""

from __future__ import annotations

import argparse
import csv
import platform
import warnings
from collections import defaultdict

import numpy as np
import torch

from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, edge_metrics, make_dataset


def _scaled(g: np.ndarray) -> np.ndarray:
    g = np.abs(g)
    top = g[~np.eye(len(g), dtype=bool)].max()
    return g / top if top > 0 else g


def _error(est: SparseGraph, name: str) -> float:
    """A design's geometric mean one-step error over the folds."""
    return float(np.exp(np.mean(np.log(np.clip(est.design_errors_[name], 1e-12, None)))))


def _mean_switch(est: SparseGraph) -> np.ndarray:
    e = est.design_errors_
    gap = np.log(np.clip(e["differences"], 1e-12, None)) - np.log(np.clip(e["smoothed"], 1e-12, None))
    return est.design_graphs_["differences" if gap.mean() < 0 else "smoothed"]


def _weighted(est: SparseGraph, power: float) -> np.ndarray:
    return sum(_error(est, k) ** -power * _scaled(g) for k, g in est.design_graphs_.items())


RULES = {
    "smoothed": lambda est: est.design_graphs_["smoothed"],
    "differences": lambda est: est.design_graphs_["differences"],
    "auto (1 se)": lambda est: est.graph_,
    "mean switch": _mean_switch,
    "average": lambda est: _weighted(est, 0.0),
    "1/err": lambda est: _weighted(est, 1.0),
    "1/err^2": lambda est: _weighted(est, 2.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="sparse_tanh,lorenz96,hill,glv,coupled_rossler,hyper_rossler")
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--first-instance", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="graph_design_rules.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["family", "instance", "regime", "seed", "design", *RULES])
        writer.writeheader()
        for fam in args.families.split(","):
            if fam not in FAMILIES:
                raise SystemExit(f"unknown family {fam!r}; choose from {sorted(FAMILIES)}")
            for reg in args.regimes.split(","):
                for inst in range(args.first_instance, args.first_instance + args.instances):
                    data = make_dataset(fam, inst, REGIMES[reg], args.seed)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", GraphWarning)
                        est = SparseGraph(seed=args.seed).fit(data.train.values, t=data.train.times)
                    scores = {name: edge_metrics(rule(est), data.truth)["auroc"] for name, rule in RULES.items()}
                    writer.writerow({"family": fam, "instance": inst, "regime": reg, "seed": args.seed,
                                     "design": est.design_, **scores})
                    f.flush()
                    for name, v in scores.items():
                        cells[reg][name].append(v)
                    print(f"{fam:16s} {reg:17s} i{inst} {est.design_:11s}",
                          " ".join(f"{v:.3f}" for v in scores.values()), flush=True)
    print(f"\n# mean off-diagonal AUROC; {platform.machine()}, torch {torch.__version__}, 1 thread; rows in {args.out}")
    print("| regime | " + " | ".join(RULES) + " |\n|---|" + "---|" * len(RULES))
    hard = [r for r in cells if r != "standard"]
    for reg in [*cells, "hard regimes"]:
        pooled = {n: [v for r in (hard if reg == "hard regimes" else [reg]) for v in cells[r][n]] for n in RULES}
        print(f"| {reg} | " + " | ".join(f"{np.mean(pooled[n]):.3f}" for n in RULES) + " |")


if __name__ == "__main__":
    main()
