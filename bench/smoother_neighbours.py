"""The local smoother's neighbour search on one long trajectory: :func:`~sparsedyn.derivatives.nearest_neighbours`
(runs of consecutive points, O(T k)) against the (T, T) stable argsort of every distance it replaced (the anchor,
written out here), side by side in one process: CPU seconds, peak memory of the numpy arrays (tracemalloc), and
whether the two give the same indices. With ``--fit``: a default ``SparseGraph()`` fit to one trajectory of each
length instead (a forced 6-variable linear system with 6 edges, 2% noise; CPU seconds, the process's peak resident
memory so far, off-diagonal AUROC), one length per run to read each one's own peak; it runs on trees from
before ``nearest_neighbours`` too (``PYTHONPATH=<old tree>/src``), for the before-and-after.

    python bench/smoother_neighbours.py --points 2000,10000,20000 --k 15
    python bench/smoother_neighbours.py --fit --points 20000
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
import tracemalloc
import warnings

import numpy as np


def all_distances(t: np.ndarray, k: int) -> np.ndarray:
    """The replaced search: every pairwise distance, stably argsorted per row."""
    return np.argsort(np.abs(t[:, None] - t[None, :]), axis=1, kind="stable")[:, :min(k, len(t))]


def fit_one_trajectory(points: int) -> None:
    """A default SparseGraph fit to one long trajectory (see the module docstring)."""
    from scipy.integrate import solve_ivp

    from sparsedyn.graph import SparseGraph
    from sparsedyn.graph_benchmark import edge_metrics

    n, rng = 6, np.random.default_rng(0)
    A = -np.eye(n)
    A[1, 0], A[2, 1], A[0, 2], A[3, 4], A[5, 3], A[4, 5] = 2.0, -2.0, 2.0, 1.5, -1.5, 1.0
    forcing = np.array([1.0, 1.3, 0.7, 2.1, 0.5, 1.7])  # keeps the state moving over the whole record
    t = np.linspace(0, 200, points)
    X = solve_ivp(lambda s, x: A @ x + np.sin(forcing * s), (0, 200), rng.normal(size=n), t_eval=t, rtol=1e-8).y.T
    X += 0.02 * X.std(axis=0) * rng.standard_normal(X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.process_time()
        g = SparseGraph().fit(X, t=t)
        seconds = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{points:7d} points: fit {seconds:.1f} s CPU, peak {peak:.2f} GB, "
          f"AUROC {edge_metrics(g.graph_, A != 0)['auroc']:.3f}", flush=True)


def measured(search, t: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    tracemalloc.start()
    start = time.process_time()
    out = search(t, k)
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1] / 1e9
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="2000,10000,20000")
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--fit", action="store_true", help="a default SparseGraph fit per length instead")
    args = ap.parse_args()
    print(f"# {platform.machine()}; python bench/smoother_neighbours.py --points {args.points} --k {args.k}"
          + (" --fit" if args.fit else ""))
    if args.fit:
        for points in (int(p) for p in args.points.split(",")):
            fit_one_trajectory(points)
        return
    from sparsedyn.derivatives import nearest_neighbours  # here: --fit also runs on trees from before it

    print(f"{'points':>7} {'runs s':>8} {'runs GB':>8} {'argsort s':>10} {'argsort GB':>11} {'time ratio':>11} same")
    for T in (int(p) for p in args.points.split(",")):
        t = np.sort(np.random.default_rng(0).uniform(0, 100, T))
        fast, fast_s, fast_gb = measured(nearest_neighbours, t, args.k)
        slow, slow_s, slow_gb = measured(all_distances, t, args.k)
        print(f"{T:7d} {fast_s:8.3f} {fast_gb:8.3f} {slow_s:10.3f} {slow_gb:11.3f} {slow_s / max(fast_s, 1e-9):10.0f}x "
              f"{np.array_equal(fast, slow)}", flush=True)


if __name__ == "__main__":
    main()
