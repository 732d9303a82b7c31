"""The figure of a fitted :class:`~sparsedyn.graph.SparseGraph`: its graph with each edge's confidence, and
its forecasts of trajectories next to the observations.

    g = SparseGraph().fit(X, t=t, feature_names=names)
    g.plot("graph.png", X[:3], t)          # or: plot_graph(g, "graph.png", series)

Left: ``graph_`` as a heat map (rows: targets, columns: sources; each row's scores as fitted, the diagonal
left blank since self-dependencies are not penalised), with a mark on every edge whose ``edge_probability_``
is at least ``confident`` (filled, with ``+`` / ``-`` for the sign of the fitted Jacobian) or at least
0.5 (open), and, if the true graph is known, a square around each true edge. Right (when trajectories are
given): each trajectory forecast from its first observation (:meth:`~sparsedyn.graph.SparseGraph.simulate`,
lines) over its observations (dots), for the ``features`` most connected variables. Written atomically
(:mod:`sparsedyn.io`).
"""

from __future__ import annotations

import io as _io
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import _atomic
from .tasks.user_data import DataError, Series, from_arrays, unwrap_phases

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

# ``est`` below is a fitted SparseGraph; typed Any because sparsedyn.graph imports this module (its ``plot``)

CONFIDENT = 0.9  # edge_probability_ at which an edge is marked filled (the calibration the benchmark checks)


def graph_figure(est: Any, series: Series | None = None, truth: np.ndarray | None = None,
                 confident: float = CONFIDENT, features: int = 4, trajectories: int = 3) -> Figure:
    """The figure (see the module docstring); ``truth`` (n, n) boolean, if known, outlines the true edges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est._check_fitted()
    n, names = est.n_features_in_, est.feature_names_in_
    if truth is not None and np.shape(truth) != (n, n):
        raise DataError(f"truth must be ({n}, {n}) like graph_, got shape {np.shape(truth)}")
    panels = 2 if series is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 0.6, 5.2), squeeze=False)
    ax = axes[0, 0]
    scores = np.array(est.graph_, dtype=float)
    np.fill_diagonal(scores, np.nan)
    top = np.nanmax(scores) if np.isfinite(scores).any() else 0.0
    image = ax.imshow(scores, cmap="Greys", vmin=0, vmax=top if top > 0 else 1.0)  # an all-zero graph stays white
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="edge score (mean |Jacobian|, scaled)")
    probability, sign = est.edge_probability_, est.sign_
    off = ~np.eye(n, dtype=bool)
    for low, high, face in ((confident, np.inf, "C3"), (0.5, confident, "none")):  # filled, then open marks
        i, j = np.nonzero(off & (probability >= low) & (probability < high))
        ax.scatter(j, i, s=60, facecolors=face, edgecolors="C3", linewidths=1.2, label=f"probability >= {low:g}")
    for i, j in zip(*np.nonzero(off & (probability >= confident))):
        ax.text(j, i, "+" if sign[i, j] > 0 else "-" if sign[i, j] < 0 else "", ha="center", va="center",
                color="white", fontsize=8, fontweight="bold")
    if truth is not None:
        i, j = np.nonzero(off & np.asarray(truth, dtype=bool))
        ax.scatter(j, i, s=150, marker="s", facecolors="none", edgecolors="C0", linewidths=1.0, label="true edge")
    ticks = range(n) if n <= 30 else range(0, n, max(1, n // 15))
    ax.set_xticks(list(ticks), [names[k] for k in ticks], rotation=90, fontsize=7)
    ax.set_yticks(list(ticks), [names[k] for k in ticks], fontsize=7)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    empty = "; no edge scores above 0" if not top > 0 else ""
    ax.set_title(f"graph_ ({est.design_} derivatives, {'degree-2' if est.poly_ else 'linear'} forecasts{empty})",
                 fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower right", bbox_to_anchor=(0.99, 0.0), ncol=3, fontsize=7,
               frameon=False)
    if series is not None:
        _forecasts(axes[0, 1], est, series, features, trajectories)
    fig.text(0.01, 0.01, f"SparseGraph, seed {est.seed}, fit {est.fit_seconds_:.1f} s CPU · "
             f"{platform.machine()}", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _forecasts(ax: Any, est: Any, series: Series, features: int, trajectories: int) -> None:
    """Forecasts from each trajectory's first observation over a fine grid, and the observations."""
    if series.n_features != est.n_features_in_:
        raise DataError(f"the trajectories have {series.n_features} features, the fit had {est.n_features_in_}")
    degree = np.abs(est.graph_).sum(0) + np.abs(est.graph_).sum(1) - 2 * np.abs(np.diag(est.graph_))
    shown = sorted(np.argsort(-degree, kind="stable")[:features])
    times, values = series.times[:trajectories], series.values[:trajectories]
    # runs recorded from different clock times are drawn from their own starts (the field is autonomous),
    # else they sit apart on one long axis, each squeezed to a sliver
    since = len({float(t[0]) for t in times}) > 1
    for k, (t, x) in enumerate(zip(times, values)):
        fine = np.linspace(t[0], t[-1], 200)
        forecast = est.simulate(x[0], fine)
        shift = t[0] if since else 0.0
        for c, j in enumerate(shown):
            label = est.feature_names_in_[j] if k == 0 else None
            ax.plot(fine - shift, forecast[:, j], color=f"C{c}", lw=1.2, label=label, ls=("-", "--", ":")[k % 3])
            ax.plot(t - shift, x[:, j], "o", color=f"C{c}", ms=3)
    ax.set_xlabel("time since each trajectory's first observation" if since else "time")
    ax.set_title(f"forecasts from the first observation (lines) and data (dots), "
                 f"{min(trajectories, len(series.times))} trajectories", fontsize=9)
    ax.legend(fontsize=7, frameon=False)


def plot_graph(est: Any, path: str | Path, X: Any = None, t: Any = None, truth: np.ndarray | None = None,
               **options: Any) -> Path:
    """Write :func:`graph_figure` to ``path`` (PNG, atomically); ``X``, ``t`` as ``fit`` takes them (or a
    :class:`~sparsedyn.tasks.user_data.Series`) are the trajectories to forecast, if any."""
    import matplotlib.pyplot as plt

    missing = getattr(est, "missing", "error")  # the fit's own rule for partly missing points
    series = X if isinstance(X, Series) or X is None else from_arrays(X, t, None, est.feature_names_in_, missing)
    if series is not None:  # phases recorded modulo 2 pi are drawn unwrapped, as the forecasts are
        series = unwrap_phases(series, getattr(est, "periodic_", ()))
    fig = graph_figure(est, series, truth, **options)
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    _atomic(path, lambda f: f.write(buffer.getvalue()))
    return path
