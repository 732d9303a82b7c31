"""Tutorial: from a CSV you made to a dependency graph and a forecast (docs/tutorial-own-data.md).

Writes ``own-data/lotka_volterra.csv`` (a 4-species Lotka-Volterra system simulated with numpy
alone), fits a dense and a GroupLasso ``SparseODE`` to it, prints their scores and graphs, and
saves ``own-data/graph.png`` (true vs learned dependencies) and ``own-data/forecast.png``.

    python examples/own_data.py [--out own-data]
"""

from __future__ import annotations

import argparse
import csv
import platform
from pathlib import Path

import numpy as np

# dx_i/dt = x_i (r_i + sum_j A_ij x_j): species 1 eats 0, 2 eats 1, 3 competes with 2 only
R = np.array([1.0, -0.5, -0.5, 0.3])
A = np.array([[-0.2, -0.6, 0.0, 0.0],
              [0.5, -0.1, -0.4, 0.0],
              [0.0, 0.4, -0.1, -0.3],
              [0.0, 0.0, 0.3, -0.3]])
NAMES = ["plankton", "krill", "fish", "seal"]


def simulate(x0: np.ndarray, t: np.ndarray, substeps: int = 20) -> np.ndarray:
    """RK4 on a fine grid, returned at the times ``t``."""
    out, x = [x0], x0.copy()
    for t0, t1 in zip(t[:-1], t[1:]):
        h = (t1 - t0) / substeps
        for _ in range(substeps):
            f = lambda y: y * (R + A @ y)  # noqa: E731
            k1 = f(x)
            k2 = f(x + h / 2 * k1)
            k3 = f(x + h / 2 * k2)
            k4 = f(x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(x)
    return np.array(out)


def write_csv(path: Path, n_runs: int = 30, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 6.0, 25)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "run", *NAMES])
        for run in range(n_runs):
            x = simulate(rng.uniform(0.5, 1.5, size=4), t) * (1 + 0.01 * rng.normal(size=(len(t), 4)))
            for k in range(len(t)):
                w.writerow([f"{t[k]:.4f}", f"run{run}", *[f"{v:.5f}" for v in x[k]]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("own-data"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "lotka_volterra.csv"
    write_csv(csv_path)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparsedyn import SparseODE
    from sparsedyn.analysis import recovery_metrics
    from sparsedyn.tasks.user_data import load_series

    series = load_series(csv_path, time="time", group="run")  # the same checks as the CLI task
    X, t = np.stack(series.values), series.times[0]
    train, test = X[:24], X[24:]  # 24 runs to learn from, 6 held out
    truth = (A != 0).astype(float)

    dense = SparseODE(method="vanilla", hidden=(32, 32), epochs=150).fit(train, t=t, feature_names=series.features)
    print(f"dense: test R^2 {dense.score(test, t=t):.3f}, AUROC "
          f"{recovery_metrics(dense.path_scores_, truth)['auroc']:.3f}")
    sparse = SparseODE(method="group_lasso", method_params={"hidden": [16]}, hidden=(32, 32), epochs=150,
                   relative_strength=False)  # the path's strengths below are group lasso's own (absolute)
    print("group_lasso path (each strength warm-started from the previous one):")
    print("  strength  train R^2  feature sparsity  AUROC")
    for row in sparse.path(train, t=t, strengths=[0.0, 3e-3, 1e-2, 3e-2, 1e-1], feature_names=series.features):
        print(f"  {row['strength']:<8g}  {row['score']:9.3f}  {row['feature_sparsity']:16.2f}  "
              f"{recovery_metrics(row['scores'], truth)['auroc']:.3f}")
    print(f"group_lasso at {sparse.strength:g}: test R^2 {sparse.score(test, t=t):.3f}")
    print("  learned graph (row depends on column):")
    for name, row in zip(series.features, sparse.graph_):
        print(f"    {name:9s} <- {', '.join(f for f, v in zip(series.features, row) if v) or '-'}")
    fitted = {"dense": dense, "group_lasso": sparse}

    footer = f"python examples/own_data.py · {platform.machine()}, {platform.system()}, CPU"
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, (title, m) in zip(axes, [("true", truth), ("dense", fitted["dense"].graph_),
                                     (f"group_lasso {sparse.strength:g}", fitted["group_lasso"].graph_)]):
        ax.imshow(m, cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks(range(4), NAMES, rotation=45, fontsize=8)
        ax.set_yticks(range(4), NAMES, fontsize=8)
        ax.set_title(f"{title} (row depends on column)", fontsize=9)
    fig.text(0.01, 0.01, footer, fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(args.out / "graph.png", dpi=100)

    fine = np.linspace(0, 2 * t[-1], 200)  # forecast beyond the training horizon too
    pred = fitted["group_lasso"].simulate(test[0, 0], fine)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for j, name in enumerate(NAMES):
        ax.plot(fine, simulate(test[0, 0], fine)[:, j], color=f"C{j}", lw=1, label=f"{name} (true)")
        ax.plot(fine, pred[:, j], "--", color=f"C{j}", lw=1.5, label=f"{name} (group_lasso)")
    ax.axvline(t[-1], color="0.6", lw=0.8)
    ax.set_xlabel("time (training data end at the grey line)")
    ax.legend(fontsize=6, ncol=2)
    fig.text(0.01, 0.01, footer, fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(args.out / "forecast.png", dpi=100)
    print(f"wrote {csv_path}, {args.out / 'graph.png'} and {args.out / 'forecast.png'}")


if __name__ == "__main__":
    main()
