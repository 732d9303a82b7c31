"""Why `edge_probability_` is over-confident on Kuramoto oscillators: two probes on ``bench/graph_phases.py``'s
data sets, with ``SparseGraph(periodic=phases)`` as that bench fits it.

- ``dense``: the necessity check with every variable's library terms in the refit (an edge counts in a random half
  when the half selected it *and* leaving its source out of the ridge refit on all variables' terms raises the
  other half's error), against the shipped check, whose refit holds the half's selected variables only. If the
  false confident edges were stand-ins for correlated true parents that a half failed to select, the dense refit
  would give them away (the parent takes over); the count of edges at >= 0.9 and of true ones among them, per data
  set, for both.
- ``kinds``: what the false edges at probability >= 0.9 are: the reverse of a true edge, two hops along true edges
  (j -> k -> i), a sibling (sharing a parent or a child with the target), or other.

    python bench/graph_phases_necessity.py --probe dense --out necessity_dense.jsonl   # 24 Kuramoto data sets
    python bench/graph_phases_necessity.py --probe kinds
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # graph_phases, beside this file
import graph_phases  # noqa: E402
from sparsedyn import graph as graph_module  # noqa: E402
from sparsedyn import loco  # noqa: E402
from sparsedyn.graph import SparseGraph  # noqa: E402
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, make_dataset  # noqa: E402


class DenseNecessity:
    """Stands in for ``necessity_frequency`` inside ``sparsedyn.graph`` (the probe's only way to reach the fit's
    halves): returns the shipped frequencies unchanged, and records beside them the dense-refit variant."""

    def __init__(self) -> None:
        self.dense: list[np.ndarray] = []

    def __call__(self, z, y, weights, halves, selected, poly, ridge=loco.RIDGE, periodic=()):
        shipped = loco.necessity_frequency(z, y, weights, halves, selected, poly, ridge, periodic)
        per_half = []
        for s in range(len(selected)):
            one = slice(halves.start + s, halves.start + s + 1)
            every = np.ones_like(selected[s:s + 1])
            per_half.append(loco.necessity_frequency(z, y, weights, one, every, poly, ridge, periodic) * selected[s])
        dense = np.mean(per_half, axis=0)
        np.fill_diagonal(dense, 1.0)
        self.dense.append(dense)
        return shipped


def kind(truth: np.ndarray, i: int, j: int) -> str:
    """What the false edge ``j -> i`` is, relative to the true graph (``truth[i, j]``: ``j -> i``)."""
    t = truth.copy()
    np.fill_diagonal(t, False)
    if t[j, i]:
        return "reverse"
    if ((t.astype(int) @ t.astype(int)) > 0)[i, j]:
        return "two_hop"
    if (t[i] & t[j]).any() or (t[:, i] & t[:, j]).any():
        return "sibling"
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", choices=("dense", "kinds"), default="dense")
    ap.add_argument("--family", default="kuramoto")
    ap.add_argument("--regimes", default="standard,few_points,noisy,few_trajectories")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    factory, span, columns = graph_phases.SYSTEMS[args.family]
    FAMILIES[args.family] = (factory, span)
    print(f"# graph_phases_necessity --probe {args.probe}: {platform.machine()}, torch {torch.__version__}, 1 thread")
    recorder = DenseNecessity()
    if args.probe == "dense":
        graph_module.necessity_frequency = recorder  # type: ignore[assignment]
    totals: dict[str, list[int]] = {"shipped": [0, 0], "dense": [0, 0]}
    kinds: dict[str, int] = {}
    jobs = itertools.product(args.regimes.split(","), range(args.instances), [int(s) for s in args.seeds.split(",")])
    for regime, instance, seed in jobs:
        data = make_dataset(args.family, instance, REGIMES[regime], seed)
        recorder.dense.clear()
        est = SparseGraph(seed=seed, periodic=list(columns)).fit(data.train.values, t=data.train.times)
        off = ~np.eye(len(data.truth), dtype=bool)
        row = {"family": args.family, "regime": regime, "instance": instance, "seed": seed}
        if args.probe == "dense":
            for name, p in (("shipped", est.edge_probability_), ("dense", np.mean(recorder.dense, axis=0))):
                confident = p[off] >= 0.9
                row[name] = [int(confident.sum()), int((confident & data.truth[off]).sum())]
                totals[name] = [a + b for a, b in zip(totals[name], row[name])]
        else:
            p = est.edge_probability_.copy()
            np.fill_diagonal(p, 0.0)
            row["false"] = [f"{j}->{i}: {kind(data.truth, i, j)}" for i, j in np.argwhere((p >= 0.9) & ~data.truth)]
            for entry in row["false"]:
                kinds[entry.split(": ")[1]] = kinds.get(entry.split(": ")[1], 0) + 1
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")
    if args.probe == "dense":
        for name, (edges, true) in totals.items():
            print(f"{name:8s} edges at >= 0.9: {edges}, true: {true} ({true / max(edges, 1):.1%})")
    else:
        print("false edges at >= 0.9 by kind:", kinds)


if __name__ == "__main__":
    main()
