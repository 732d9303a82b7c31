"""Data and scores of the graph-recovery benchmark (``bench/graph_recovery.py`` runs it).

A *family* is a random system generator, an *instance* one draw of it, a *regime* how the system is
observed (trajectories, points per trajectory, relative noise, regular or irregular times). Each data
set holds out the last quarter of its trajectories for forecasts; the graph is scored on the others'
fit against the support of the true Jacobian, without self-loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analysis import ranking_metrics
from .tasks.graph_systems import DYSTS_FLOWS, GRAPH_SYSTEMS, DystsFlow
from .tasks.systems import DynamicalSystem, make_system
from .tasks.user_data import Series

# family -> (system factory from an instance seed, time span of a trajectory; None: the system's own ``span``)
FAMILIES: dict[str, tuple] = {
    "sparse_tanh": (lambda s: make_system("sparse_tanh", n=10, parents=2, seed=s), 4.0),
    "lorenz96": (lambda s: make_system("lorenz96", n=10, F=8.0 + s % 3), 2.0),
    "hill": (lambda s: GRAPH_SYSTEMS["hill"](n=10, parents=2, seed=s), 8.0),
    "glv": (lambda s: GRAPH_SYSTEMS["glv"](n=12, parents=2, seed=s), 10.0),
    "coupled_rossler": (lambda s: GRAPH_SYSTEMS["coupled_rossler"](m=5, parents=1, seed=s), 6.0),
    "hyper_rossler": (lambda s: GRAPH_SYSTEMS["hyper_rossler"](), 6.0),
    # instance k: the k-th flow of DYSTS_FLOWS (the package's published parameters; needs `pip install dysts`)
    "dysts": (lambda s: DystsFlow(DYSTS_FLOWS[s % len(DYSTS_FLOWS)]), None),
}


@dataclass(frozen=True)
class Regime:
    """How a system is observed: ``trajectories`` x ``points`` at relative ``noise`` (of each feature's
    standard deviation), on a regular grid or at sorted uniform random times (``irregular``)."""

    name: str
    trajectories: int = 20
    points: int = 30
    noise: float = 0.02
    irregular: bool = False


REGIMES: dict[str, Regime] = {r.name: r for r in (
    Regime("standard"),
    Regime("few_points", points=12),
    Regime("very_few_points", points=7),
    Regime("noisy", noise=0.05),
    Regime("very_noisy", noise=0.2),
    Regime("irregular", irregular=True),
    Regime("few_trajectories", trajectories=8),
)}


@dataclass
class Dataset:
    system: DynamicalSystem
    train: Series
    test: Series
    truth: np.ndarray


def make_dataset(family: str, instance: int, regime: Regime, seed: int) -> Dataset:
    """Simulate ``regime.trajectories`` trajectories of instance ``instance`` of ``family`` (noise and
    initial states from ``seed``); the last quarter (at least one) is the forecast test set."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    factory, span = FAMILIES[family]
    system = factory(instance)
    span = system.span if isinstance(system, DystsFlow) else span
    rng = np.random.default_rng([seed, instance, regime.trajectories, regime.points])
    x0 = system.sample_x0(rng, regime.trajectories)
    times, values = [], []
    for b in range(regime.trajectories):
        t = np.sort(rng.uniform(0, span, regime.points)) if regime.irregular else np.linspace(0, span, regime.points)
        t[0] = 0.0
        times.append(t)
        values.append(system.simulate(x0[b:b + 1], t)[0])
    scale = np.concatenate(values).std(axis=0)
    values = [v + regime.noise * scale * rng.standard_normal(v.shape) for v in values]
    n_test = max(1, regime.trajectories // 4)
    names = [f"x{i}" for i in range(system.n)]

    def series(idx: range) -> Series:
        return Series([times[i] for i in idx], [values[i] for i in idx], names, [str(i) for i in idx])

    split = regime.trajectories - n_test
    return Dataset(system, series(range(split)), series(range(split, regime.trajectories)),
                   system.adjacency.astype(bool))


def edge_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Off-diagonal AUROC and AUPRC of an edge-score matrix."""
    m = ranking_metrics(np.asarray(scores, dtype=float), truth)
    return {"auroc": m["auroc_offdiag"], "auprc": m["auprc_offdiag"]}


def forecast_r2(simulate, test: Series) -> float:
    """R^2 of forecasting each test trajectory from its first (noisy) state, over every point: 1 - SSE /
    the total sum of squares about the test data's mean; a blown-up forecast scores -inf."""
    sse, all_values = 0.0, []
    for t, x in zip(test.times, test.values):
        pred = simulate(x[0], t)
        if not np.isfinite(pred).all():
            return -np.inf
        sse += float(((pred - x) ** 2).sum())
        all_values.append(x)
    v = np.concatenate(all_values)
    return 1.0 - sse / float(((v - v.mean(axis=0)) ** 2).sum())
