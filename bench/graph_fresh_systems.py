"""The library-averaged ``graph_`` against the lower-error library's graph, on systems no choice was made on.

``SparseGraph.graph_`` averages its linear and degree-2 libraries' graphs with weights (held-out error)^-4;
that rule was chosen on the benchmark's families and instances. Here four system families of other sizes and
seeds (Hill network of 20 genes with 3 parents, gLV community of 16 species, sparse tanh of 20 variables,
8 coupled Rossler oscillators; instance seeds 100+), four regimes, two instances, noise seed 7: one fit per data
set, both read-outs taken from it (``library_graphs_``, ``library_errors_``), off-diagonal AUROC paired.

    python bench/graph_fresh_systems.py --families hill20,tanh20 --out a.csv
    python bench/graph_fresh_systems.py --tables a.csv,b.csv        # the paired summary of earlier rows
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # graph_design_rules, beside this file
from graph_design_rules import read_csv_files  # noqa: E402
from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, edge_metrics, make_dataset
from sparsedyn.stats import bootstrap_ci
from sparsedyn.tasks.graph_systems import GRAPH_SYSTEMS
from sparsedyn.tasks.systems import make_system

FRESH = {  # family -> (system from an instance seed, time span); none of these sizes or seeds is in the benchmark
    "hill20": (lambda s: GRAPH_SYSTEMS["hill"](n=20, parents=3, seed=100 + s), 8.0),
    "glv16": (lambda s: GRAPH_SYSTEMS["glv"](n=16, parents=3, seed=100 + s), 10.0),
    "tanh20": (lambda s: make_system("sparse_tanh", n=20, parents=3, seed=100 + s), 4.0),
    "rossler8": (lambda s: GRAPH_SYSTEMS["coupled_rossler"](m=8, parents=2, seed=100 + s), 6.0),
}


def summary(rows: list[dict]) -> str:
    d = np.array([float(r["averaged"]) - float(r["lower_error"]) for r in rows])
    lo, hi = bootstrap_ci(d, n_boot=4000)
    lines = [f"averaged minus lower-error library, paired: {len(d)} data sets, {d.mean():+.4f} "
             f"[{lo:+.4f}, {hi:+.4f}] (95% bootstrap), {(d > 1e-9).sum()} better, {(d < -1e-9).sum()} worse"]
    for fam in dict.fromkeys(r["family"] for r in rows):
        f = [x for x, r in zip(d, rows) if r["family"] == fam]
        lines.append(f"  {fam}: {np.mean(f):+.4f} over {len(f)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FRESH))
    ap.add_argument("--regimes", default="standard,few_points,noisy,few_trajectories")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="graph_fresh_systems.csv")
    ap.add_argument("--tables", default="", help="only print the summary of these CSV files (comma-separated)")
    args = ap.parse_args()
    if args.tables:
        print(summary(read_csv_files(args.tables)))
        return
    torch.set_num_threads(1)
    FAMILIES.update(FRESH)  # make_dataset draws them like the benchmark's own
    rows = []
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["family", "regime", "instance", "lower_error", "averaged"])
        writer.writeheader()
        for fam in args.families.split(","):
            for reg in args.regimes.split(","):
                for inst in range(args.instances):
                    data = make_dataset(fam, inst, REGIMES[reg], args.seed)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", GraphWarning)
                        est = SparseGraph(seed=args.seed).fit(data.train.values, t=data.train.times)
                    errors = est.library_errors_
                    lower = est.library_graphs_[min(errors, key=errors.__getitem__)]
                    row = {"family": fam, "regime": reg, "instance": inst,
                           "lower_error": edge_metrics(lower, data.truth)["auroc"],
                           "averaged": edge_metrics(est.graph_, data.truth)["auroc"]}
                    writer.writerow(row)
                    f.flush()
                    rows.append(row)
                    print(f"{fam:10s} {reg:17s} i{inst} lower-error {row['lower_error']:.4f} "
                          f"averaged {row['averaged']:.4f}", flush=True)
    print(f"\n# {platform.machine()}, torch {torch.__version__}, 1 thread; rows in {args.out}")
    print(summary(rows))


if __name__ == "__main__":
    main()
