"""Why `edge_probability_` is over-confident on Kuramoto oscillators: two probes on ``bench/graph_phases.py``'s
data sets, with ``SparseGraph(periodic=phases)`` as that bench fits it.

- ``dense``: the necessity check with every variable's library terms in the refit (an edge counts in a random half
  when the half selected it *and* leaving its source out of the ridge refit on all variables' terms raises the
  other half's error), against the shipped check, whose refit holds the half's selected variables only. If the
  false confident edges were stand-ins for correlated true parents that a half failed to select, the dense refit
  would give them away (the parent takes over); the count of edges at >= 0.9 and of true ones among them, per data
  set, for both.
- ``kinds``: what the false edges at probability >= 0.9 are: the reverse of a true edge, two hops along true edges
  (j -> k -> i), a sibling (sharing a parent or a child with the target), or other; with ``--noise`` and
  ``--points`` in place of the regimes' (noise-free data, denser sampling).
- ``ridge``: the shipped check at other ridge strengths of its refits (``--ridges``; shipped:
  ``sparsedyn.loco.RIDGE``), from the same fits.

    python bench/graph_phases_necessity.py --probe dense --out necessity_dense.jsonl   # 24 Kuramoto data sets
    python bench/graph_phases_necessity.py --probe kinds
    python bench/graph_phases_necessity.py --probe kinds --regimes standard --noise 0 --points 100
    python bench/graph_phases_necessity.py --probe ridge --ridges 0.1,0.01,0.001,0.0001
"""

from __future__ import annotations

import argparse
import dataclasses
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


class OtherRidges:
    """Stands in for ``necessity_frequency`` inside ``sparsedyn.graph`` like :class:`DenseNecessity`, recording the
    shipped check's frequencies at each of ``ridges``."""

    def __init__(self, ridges: list[float]) -> None:
        self.ridges = ridges
        self.frequencies: dict[float, list[np.ndarray]] = {r: [] for r in ridges}

    def __call__(self, z, y, weights, halves, selected, poly, ridge=loco.RIDGE, periodic=()):
        for r in self.ridges:
            self.frequencies[r].append(loco.necessity_frequency(z, y, weights, halves, selected, poly, r, periodic))
        return loco.necessity_frequency(z, y, weights, halves, selected, poly, ridge, periodic)


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
    ap.add_argument("--probe", choices=("dense", "kinds", "ridge"), default="dense")
    ap.add_argument("--ridges", default="0.1,0.01,0.001,0.0001")
    ap.add_argument("--noise", type=float, default=None, help="in place of every regime's noise")
    ap.add_argument("--points", type=int, default=None, help="in place of every regime's points per trajectory")
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
    ridges = OtherRidges([float(r) for r in args.ridges.split(",")])
    if args.probe in ("dense", "ridge"):
        graph_module.necessity_frequency = recorder if args.probe == "dense" else ridges  # type: ignore
    variants = ["dense"] if args.probe == "dense" else [f"ridge {r:g}" for r in ridges.ridges]
    totals: dict[str, list[int]] = {name: [0, 0] for name in ("shipped", *variants)}
    kinds: dict[str, int] = {}
    jobs = itertools.product(args.regimes.split(","), range(args.instances), [int(s) for s in args.seeds.split(",")])
    for regime, instance, seed in jobs:
        observed = REGIMES[regime]
        if args.noise is not None or args.points is not None:
            observed = dataclasses.replace(observed, noise=observed.noise if args.noise is None else args.noise,
                                           points=observed.points if args.points is None else args.points)
        data = make_dataset(args.family, instance, observed, seed)
        recorder.dense.clear()
        for kept in ridges.frequencies.values():
            kept.clear()
        est = SparseGraph(seed=seed, periodic=list(columns)).fit(data.train.values, t=data.train.times)
        off = ~np.eye(len(data.truth), dtype=bool)
        row = {"family": args.family, "regime": regime, "instance": instance, "seed": seed}
        if args.probe in ("dense", "ridge"):
            compared = [("shipped", est.edge_probability_)]
            compared += ([("dense", np.mean(recorder.dense, axis=0))] if args.probe == "dense" else
                         [(f"ridge {r:g}", np.mean(ridges.frequencies[r], axis=0)) for r in ridges.ridges])
            for name, p in compared:
                confident = p[off] >= 0.9
                row[name] = [int(confident.sum()), int((confident & data.truth[off]).sum())]
                totals[name] = [a + b for a, b in zip(totals[name], row[name])]
        else:
            p = est.edge_probability_.copy()
            np.fill_diagonal(p, 0.0)
            row["false"] = [f"{j}->{i}: {kind(data.truth, i, j)}" for i, j in np.argwhere((p >= 0.9) & ~data.truth)]
            confident = p[off] >= 0.9
            row["shipped"] = [int(confident.sum()), int((confident & data.truth[off]).sum())]
            totals["shipped"] = [a + b for a, b in zip(totals["shipped"], row["shipped"])]
            for entry in row["false"]:
                kinds[entry.split(": ")[1]] = kinds.get(entry.split(": ")[1], 0) + 1
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")
    if args.probe in ("dense", "ridge"):
        for name, (edges, true) in totals.items():
            print(f"{name:12s} edges at >= 0.9: {edges}, true: {true} ({true / max(edges, 1):.1%})")
    else:
        edges, true = totals["shipped"]
        print(f"edges at >= 0.9: {edges}, true: {true} ({true / max(edges, 1):.1%}); false ones by kind: {kinds}")


if __name__ == "__main__":
    main()
