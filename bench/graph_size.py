"""Graph recovery on a larger system: what a default fit costs at 30 variables, beside the peers.

The benchmark's families have 4-15 variables. Here a Hill-kinetics gene network of ``--n`` variables (two
parents each, instance 0), ``--trajectories`` x ``--points`` at 2% noise, the last quarter held out; every
method on the same data (as ``bench/graph_recovery.py`` runs them, one torch thread), off-diagonal AUROC
and CPU seconds side by side in one run. ``sparsegraph_linear`` is ``SparseGraph(poly=False)``: the linear
library alone, whose cost does not grow with the n^2 / 2 degree-2 features.

    python bench/graph_size.py --n 30 --trajectories 20 --points 30
    python bench/graph_size.py --n 30 --trajectories 50 --points 100 --methods sparsegraph,sparsegraph_linear
    python bench/graph_size.py --n 529 --methods sparsegraph   # gene scale: the hematopoiesis panel's size

The last column is the process's peak resident memory when the row is printed: a running maximum over the
methods run so far, so name one method per run to read each one's own.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # graph_recovery, beside this file
from graph_recovery import run_one  # noqa: E402
from sparsedyn.graph_benchmark import FAMILIES, Regime, make_dataset  # noqa: E402
from sparsedyn.tasks.graph_systems import GRAPH_SYSTEMS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--trajectories", type=int, default=20)
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--methods", default="sparsegraph,sparsegraph_linear,lasso_linear,lasso_poly,trees,sindy")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = f"hill{args.n}"
    FAMILIES[family] = (lambda s: GRAPH_SYSTEMS["hill"](n=args.n, parents=2, seed=s), 8.0)  # this run's system
    data = make_dataset(family, 0, Regime("size", trajectories=args.trajectories, points=args.points), 0)
    print(f"# Hill network, {args.n} variables, {len(data.train.values)} training trajectories x {args.points} "
          f"points, 2% noise; {platform.machine()}, torch {torch.__version__}, 1 thread")
    print("| method | CPU seconds | off-diagonal AUROC | forecast R^2 | peak memory of the process so far (GB) |\n"
          "|---|---|---|---|---|")
    for m in args.methods.split(","):
        r = run_one(m, data, 0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
        print(f"| {m} | {r['seconds']:.1f} | {r['auroc']:.3f} | {r.get('r2', float('nan')):.3f} | {peak:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
