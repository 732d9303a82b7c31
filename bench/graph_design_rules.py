"""How should SparseGraph combine its two designs, and its two libraries? Every rule scored on the same fits.

``SparseGraph(design="auto")`` fits smoothed derivatives and difference quotients and keeps one
(``design_``). This bench fits it once per benchmark data set and scores, from the fitted estimator's
``design_graphs_`` and ``design_errors_``, alternative rules side by side: each design alone, the shipped
one-standard-error switch, the switch on the mean gap alone, and averages of the two designs' graphs (each
scaled to its largest off-diagonal score; equal weights, or weights 1 / one-step error, squared).
Within the chosen design, from ``library_graphs_`` and ``library_errors_``: the lower-error library's graph
alone (the rule until 2026-12-06), and the two libraries' graphs averaged with weights (held-out error)^-k,
k = 1, 2, 4 (k = 4 is ``graph_`` since 2026-12-06). Mean off-diagonal AUROC per regime, and over the six hard
regimes; rows to a CSV.

    python bench/graph_design_rules.py --families hill,glv --instances 2 --out rules.csv
    python bench/graph_design_rules.py --first-instance 2 ...      # held-out instances
    python bench/graph_design_rules.py --tables a.csv,b.csv        # tables of earlier rows, pooled
"""

from __future__ import annotations

import argparse
import csv
import platform
import warnings
from collections import defaultdict

import numpy as np
import torch

from sparsedyn.graph import GraphWarning, SparseGraph, average_library_graphs
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, edge_metrics, make_dataset
from sparsedyn.stats import bootstrap_ci


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


def _libraries(est: SparseGraph, power: float) -> np.ndarray:
    """The chosen design's library graphs averaged with weights (geometric mean held-out error)^-power;
    power inf: the lower-error library alone."""
    errors = est.library_errors_  # mean log held-out error per library
    if power == np.inf:
        return est.library_graphs_[min(errors, key=errors.__getitem__)]
    return average_library_graphs(est.library_graphs_, errors, power)


RULES = {
    "smoothed": lambda est: est.design_graphs_["smoothed"],
    "differences": lambda est: est.design_graphs_["differences"],
    "auto (1 se)": lambda est: est.graph_,
    "mean switch": _mean_switch,
    "average": lambda est: _weighted(est, 0.0),
    "1/err": lambda est: _weighted(est, 1.0),
    "1/err^2": lambda est: _weighted(est, 2.0),
    "lower-error library": lambda est: _libraries(est, np.inf),
    "libraries 1/err": lambda est: _libraries(est, 1.0),
    "libraries 1/err^2": lambda est: _libraries(est, 2.0),
    "libraries 1/err^4": lambda est: _libraries(est, 4.0),
}


def report(rows: list[dict], where: str) -> None:
    """Mean AUROC per regime and rule, then the library rules against the lower-error library and the design
    rules against the shipped one-standard-error switch, paired by data set (mean difference, 95% bootstrap
    interval over the data sets by :func:`sparsedyn.stats.bootstrap_ci`; wins / losses)."""
    rules = [n for n in RULES if n in rows[0]]
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for n in rules:
            cells[r["regime"]][n].append(float(r[n]))
    print(f"\n# mean off-diagonal AUROC over {len(rows)} data sets; {platform.machine()}, torch {torch.__version__}, "
          f"1 thread; {where}")
    print("| regime | " + " | ".join(rules) + " |\n|---|" + "---|" * len(rules))
    hard = [r for r in cells if r != "standard"]
    for reg in [*cells, "hard regimes"]:
        pooled = {n: [v for r in (hard if reg == "hard regimes" else [reg]) for v in cells[r][n]] for n in rules}
        print(f"| {reg} | " + " | ".join(f"{np.mean(pooled[n]):.3f}" for n in rules) + " |")
    # the library rules against the lower-error library, the design rules against the shipped switch
    for base, compared in (("lower-error library", [m for m in rules if m.startswith("libraries")]),
                           ("auto (1 se)", ["differences", "mean switch", "average", "1/err", "1/err^2"])):
        if base not in rules:
            continue
        print(f"\n| rule minus the {base}, paired | data sets | mean | 95% interval | wins | losses |")
        print("|---|---|---|---|---|---|")
        for part, keep in (("hard regimes", lambda reg: reg != "standard"),
                           ("standard", lambda reg: reg == "standard")):
            for n in [m for m in compared if m in rules]:
                d = np.array([float(r[n]) - float(r[base]) for r in rows if keep(r["regime"])])
                if not len(d):
                    continue
                lo, hi = bootstrap_ci(d, n_boot=2000)
                print(f"| {n}, {part} | {len(d)} | {d.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}] | {(d > 1e-9).sum()} | "
                      f"{(d < -1e-9).sum()} |")


def read_csv_files(names: str) -> list[dict]:
    """The rows of comma-separated CSV file names, in order, as strings."""
    rows: list[dict] = []
    for name in filter(None, names.split(",")):
        with open(name, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="sparse_tanh,lorenz96,hill,glv,coupled_rossler,hyper_rossler")
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--first-instance", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="graph_design_rules.csv")
    ap.add_argument("--tables", default="", help="only print the tables of these CSV files (comma-separated)")
    args = ap.parse_args()
    if args.tables:
        report(read_csv_files(args.tables), f"rows in {args.tables}")
        return
    torch.set_num_threads(1)
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
                    print(f"{fam:16s} {reg:17s} i{inst} {est.design_:11s}",
                          " ".join(f"{v:.3f}" for v in scores.values()), flush=True)
    with open(args.out, newline="") as f:
        report(list(csv.DictReader(f)), f"rows in {args.out}")

if __name__ == "__main__":
    main()
