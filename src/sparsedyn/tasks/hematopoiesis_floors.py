"""How low can a forecast of a held-out donor go? Reference scores that bracket the hematopoiesis task.

Single-cell expression is noisy cell to cell, so even the true trajectory leaves a large error on
every cell. These scores use the held-out donors' own cells (they are *oracles*, not predictors)
and the task's metric (sum over lineages of the per-lineage MSE, mean over the test donors):

- ``own_smoothed``: each lineage predicted by a running mean of its own cells in pseudotime (window
  ``window`` cells): about the cell-noise floor of any deterministic trajectory;
- ``own_mean``: each lineage predicted by its own mean cell (the best constant per lineage);
- ``train_smoothed``: each lineage predicted by donor 12's smoothed lineage at the same pseudotime:
  what a model that learned donor 12's trajectories *and ignored the held-out initial state* scores.

Run ``python -m sparsedyn.tasks.hematopoiesis_floors DATA_DIR`` to print them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .hematopoiesis import TEST_DONORS, TRAIN_DONOR, Lineage, load_donor


def running_mean(X: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` rows (odd, >= 1); the window shrinks at the ends."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of cells >= 1, got {window}")
    n, half = len(X), window // 2
    cum = np.vstack([np.zeros((1, X.shape[1])), np.cumsum(X, axis=0)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (cum[hi] - cum[lo]) / (hi - lo)[:, None]


def _transfer(source: Lineage, smoothed: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``smoothed`` (given at ``source.times``) linearly interpolated to ``times``, gene by gene."""
    return np.stack([np.interp(times, source.times, smoothed[:, g]) for g in range(smoothed.shape[1])], axis=1)


def floors(data_dir: str | Path, donors: tuple[str, ...] = TEST_DONORS, window: int = 31,
           start: str = "reference") -> dict[str, dict[str, float]]:
    """``{score name: {donor: summed lineage MSE, ..., "mean": over donors}}`` (see the module doc)."""
    train = load_donor(data_dir, TRAIN_DONOR, start)
    train_smoothed = {name: running_mean(lin.X, window) for name, lin in train.items()}
    out: dict[str, dict[str, float]] = {"own_smoothed": {}, "own_mean": {}, "train_smoothed": {}}
    for donor in donors:
        own = load_donor(data_dir, donor, start)
        preds = {"own_smoothed": {n: running_mean(lin.X, window) for n, lin in own.items()},
                 "own_mean": {n: np.broadcast_to(lin.X.mean(0), lin.X.shape) for n, lin in own.items()},
                 "train_smoothed": {n: _transfer(train[n], train_smoothed[n], lin.times) for n, lin in own.items()}}
        for score, pred in preds.items():
            out[score][donor] = float(sum(np.mean((lin.X - pred[n]) ** 2) for n, lin in own.items()))
    for by_donor in out.values():
        by_donor["mean"] = float(np.mean([by_donor[d] for d in donors]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="the hematopoiesis data directory (../shared/data/hematopoiesis)")
    parser.add_argument("--window", type=int, default=31, help="running-mean window in cells (odd)")
    parser.add_argument("--start", default="reference", choices=("reference", "lineage_z"))
    args = parser.parse_args(argv)
    result = floors(args.data_dir, window=args.window, start=args.start)
    donors = [*TEST_DONORS, "mean"]
    print("| oracle | " + " | ".join(f"donor {d}" if d != "mean" else "test MSE (mean)" for d in donors) + " |")
    print("|---" * (len(donors) + 1) + "|")
    for score, per_donor in result.items():
        print(f"| {score} | " + " | ".join(f"{per_donor[d]:.4f}" for d in donors) + " |")


if __name__ == "__main__":
    main()
