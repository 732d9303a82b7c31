"""Probes of SparseGraph's defaults on the graph-recovery benchmark: candidate changes measured paired against
the shipped behaviour on the very same data sets, before any is adopted (none of these was).

- ``readouts``: other edge scores from the same fit, off-diagonal AUROC paired against ``graph_``: the edge
  probabilities (necessity) and stability-selection frequencies alone, tie-broken by ``graph_``, or combined
  with it (rank averages, sums, products), and consensus with the peers' scores (LassoCV linear, trees: the
  "wisdom of crowds" of network inference) by rank averaging.
- ``steps``: convergence of the path: ``graph_`` with 400 FISTA steps per stage against the default 150.
- ``blowup``: the forecasting library chosen blow-up-averse: a library whose full-data field, integrated from
  every training trajectory's first observation over ``--horizon`` times its observed span, leaves the data's
  range (``SparseGraph.simulate``'s bound) is not chosen if the other stays bounded (then the held-out
  forecast error decides, as shipped). Forecast R^2 of the test trajectories (no trajectory matching, for
  both rules) paired against the shipped rule.
- ``adaptive``: the adaptive group lasso (``SparseGraph(adaptive=gamma)``), variants by ``--variants``.
- ``shoot``: ``graph_`` read from trajectory-matched fields: each library's full-data member at its best stage
  refitted by multiple shooting (:func:`~sparsedyn.shooting.shooting_refit`; support fixed, or every library
  term free), the libraries' graphs averaged as ``graph_`` averages them, alone and half-and-half with ``graph_``.
- ``forecast_weights``: the libraries' graphs averaged with weights from their held-out forecast errors
  (``forecast_errors_``) instead of their derivative errors, at powers 1, 2 and 4.
- ``windows``: the differences design over windows of 2 or 3 intervals (a boxcar weak form), alone and inside
  the automatic design choice.
- ``design``: the design rule read off one fit: each design's graph alone, and a switch on the mean one-step
  error gap without the one-standard-error margin.
- ``weak``: the weak form with a bump test function over windows of 3 and 5 intervals in place of the
  differences design, alone and inside the automatic design choice.
- ``ensemble``: the designs' graphs averaged with equal weights instead of chosen between: the smoother's and
  the differences', and with the weak form (windows of 3 intervals) as a third.
- ``smoother``: the cubic smoothing spline with its penalty by generalised cross-validation
  (``smooth="spline"``) in place of the local quadratic smoother: the smoothed design alone with each smoother,
  and the spline inside the shipped automatic choice between the smoother and difference quotients; and a choice
  among three designs (local smoother by default, differences or the spline where they beat it by the shipped
  rule's margin).
- ``per_output``: each output's row of each library's graph read at the path stage that minimises that
  output's held-out error (one strength per output, as LassoCV per output chooses), not the summed error's.

    python bench/graph_probes.py --probe readouts --families sparse_tanh,hill --out a.jsonl
    python bench/graph_probes.py --summary a.jsonl,b.jsonl     # the paired table of earlier rows
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))  # graph_fresh_systems, beside this file
from graph_fresh_systems import FRESH  # noqa: E402
from sparsedyn import graph_benchmark  # noqa: E402
from sparsedyn.baselines.edges import BASELINES, simulate  # noqa: E402
from sparsedyn.derivatives import derivative_data  # noqa: E402
from sparsedyn.graph import SparseGraph, _library_name, average_library_graphs  # noqa: E402
from sparsedyn.graph_benchmark import REGIMES, edge_metrics, forecast_r2, make_dataset  # noqa: E402
from sparsedyn.interval_error import ObservedPairs  # noqa: E402
from sparsedyn.shooting import shooting_refit  # noqa: E402
from sparsedyn.stats import bootstrap_ci  # noqa: E402
from sparsedyn.tasks.user_data import from_arrays  # noqa: E402

graph_benchmark.FAMILIES.update(FRESH)  # the fresh families may be probed too (--families hill20,...)
HARD = "few_points,very_few_points,noisy,very_noisy,irregular,few_trajectories"


def _scaled(g: np.ndarray, off: np.ndarray) -> np.ndarray:
    top = g[off].max()
    return g / top if top > 0 else g


def _ranks(g: np.ndarray, off: np.ndarray) -> np.ndarray:
    r = np.zeros_like(g, dtype=float)
    r[off] = rankdata(g[off]) / off.sum()
    return r


READOUTS: dict[str, Callable[[dict, np.ndarray], np.ndarray]] = {
    "probability": lambda s, off: s["prob"] + 1e-6 * _scaled(s["graph"], off),
    "stability": lambda s, off: s["stab"] + 1e-6 * _scaled(s["graph"], off),
    "ranks graph + probability": lambda s, off: _ranks(s["graph"], off) + _ranks(s["prob"], off),
    "ranks graph + stability": lambda s, off: _ranks(s["graph"], off) + _ranks(s["stab"], off),
    "graph + probability": lambda s, off: _scaled(s["graph"], off) + s["prob"],
    "graph + probability / 2": lambda s, off: _scaled(s["graph"], off) + 0.5 * s["prob"],
    "graph x (0.1 + probability)": lambda s, off: _scaled(s["graph"], off) * (0.1 + s["prob"]),
    "ranks graph + LassoCV linear": lambda s, off: _ranks(s["graph"], off) + _ranks(s["lin"], off),
    "ranks graph + trees": lambda s, off: _ranks(s["graph"], off) + _ranks(s["trees"], off),
    "ranks 2 graph + LassoCV + trees": lambda s, off: (2 * _ranks(s["graph"], off) + _ranks(s["lin"], off)
                                                      + _ranks(s["trees"], off)),
}


def _quiet_fit(seed: int, data, **options) -> SparseGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SparseGraph(seed=seed, refine=False, **options).fit(data.train.values, t=data.train.times)


def probe_readouts(data, seed: int) -> dict[str, float]:
    g = _quiet_fit(seed, data)
    deriv = derivative_data(data.train)
    scores = {"graph": g.graph_, "prob": g.edge_probability_, "stab": g.edge_stability_,
              "lin": BASELINES["lasso_linear"](deriv, seed=seed).scores,
              "trees": BASELINES["trees"](deriv, seed=seed).scores}
    off = ~np.eye(len(data.truth), dtype=bool)
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"]}
    row.update({name: edge_metrics(read(scores, off), data.truth)["auroc"] for name, read in READOUTS.items()})
    return row


def probe_steps(data, seed: int) -> dict[str, float]:
    return {"shipped": edge_metrics(_quiet_fit(seed, data).graph_, data.truth)["auroc"],
            "400 steps per stage": edge_metrics(_quiet_fit(seed, data, steps=400).graph_, data.truth)["auroc"]}


class _KeepDesigns(SparseGraph):
    """SparseGraph that keeps its fitted designs, so that each library's path can be read after the fit."""

    def _library_graphs(self, design):
        self.kept_designs_ = {**getattr(self, "kept_designs_", {}), id(design.scaler): design}
        return super()._library_graphs(design)


def _forecaster(g: SparseGraph, member) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def derivative(x: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(g.scaler_.states(np.atleast_2d(x)), dtype=torch.float32)
        with torch.no_grad():
            return g.scaler_.derivative_units(member(z)[0].numpy().astype(float))

    bound = float((np.abs(g.scaler_.x_mean) + 10 * g.scaler_.x_scale).max()) * 10  # SparseGraph.simulate's
    return lambda x0, t: simulate(derivative, x0, t, bound=bound)


def probe_blowup(data, seed: int, horizon: float) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = _KeepDesigns(seed=seed, refine=False).fit(data.train.values, t=data.train.times)
    design = g.kept_designs_[id(g.scaler_)]
    r2, blown = {}, {}
    for field, path, _ in design.fits:
        name = _library_name(field)
        field.load_state_dict(path.states[g._cv_curve(path)[2]])
        forecast = _forecaster(g, field.member(g.n_folds_))
        r2[name] = max(forecast_r2(forecast, data.test), -1.0)
        blown[name] = sum(bool(np.isnan(forecast(x[0], np.linspace(t[0], t[0] + horizon * (t[-1] - t[0]),
                                                                   int(horizon * len(t))))).any())
                          for t, x in zip(data.train.times, data.train.values))
    shipped = _library_name(g.field_)
    averse = min(r2, key=lambda k: (blown[k] > 0, g.forecast_errors_.get(k, 0.0)))
    return {"shipped": r2[shipped], "blow-up-averse": r2[averse], "switched": float(averse != shipped)}


class _BestStageAdaptive(SparseGraph):
    """SparseGraph whose adaptive path takes its penalty factors from the first path's best stage instead of
    its densest (``SparseGraph(adaptive=...)``): the ``adaptive`` probe's ``best`` start."""

    def _adaptive_norms(self, path):
        return path.norms[self._cv_curve(path)[2]]


def probe_adaptive(data, seed: int, variants: str) -> dict[str, float]:
    """``variants``: comma-separated ``start:gamma``, start ``dense`` (``SparseGraph(adaptive=gamma)``) or
    ``best`` (:class:`_BestStageAdaptive`)."""
    row = {"shipped": edge_metrics(_quiet_fit(seed, data).graph_, data.truth)["auroc"]}
    for variant in variants.split(","):
        start, gamma = variant.split(":")
        kind = SparseGraph if start == "dense" else _BestStageAdaptive
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = kind(seed=seed, refine=False, adaptive=float(gamma)).fit(data.train.values, t=data.train.times)
        row[f"adaptive, {start} start, gamma {float(gamma):g}"] = edge_metrics(g.graph_, data.truth)["auroc"]
    return row


def _shot_graph(field, scaler, pairs, z: torch.Tensor, free: bool) -> np.ndarray:
    """Mean |Jacobian| at ``z`` of one full-data library member after trajectory matching
    (:func:`~sparsedyn.shooting.shooting_refit`), its off-diagonal scaled to a largest score of 1: with ``free``
    every library term is refitted (the zero ones started at 1e-6), else the selected support only."""
    if free:
        field = field.member(0)  # a copy: the caller's field keeps its zeros
        with torch.no_grad():
            for p in (field.linear, field.quad) if field.poly else (field.linear,):
                p[p == 0] = 1e-6
    refit = shooting_refit(field, scaler, pairs, np.ones((1, len(pairs.dt)), dtype=bool))
    g = refit.jacobian(z)[0].numpy().astype(float)
    if not np.isfinite(g).all():  # a refit that left every bound: the collocation fit's graph stands
        g = field.jacobian(z)[0].numpy().astype(float)
    return _scaled(g, ~np.eye(len(g), dtype=bool))


def probe_shoot(data, seed: int) -> dict[str, float]:
    """``graph_`` read from trajectory-matched fields instead of the collocation fits: each library's
    full-data member at its best stage refitted by multiple shooting (support fixed, or every term free),
    the libraries' graphs averaged as ``graph_`` averages them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = _KeepDesigns(seed=seed, refine=False).fit(data.train.values, t=data.train.times)
    design = g.kept_designs_[id(g.scaler_)]
    pairs = ObservedPairs.of(from_arrays(data.train.values, data.train.times))
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"]}
    for free in (False, True):
        graphs = {}
        for field, path, _ in design.fits:
            field.load_state_dict(path.states[g._cv_curve(path)[2]])
            member = field.member(g.n_folds_)
            graphs[_library_name(field)] = _shot_graph(member, design.scaler, pairs, design.z, free)
        averaged = average_library_graphs(graphs, design.errors)
        name = "shot, every term free" if free else "shot, support fixed"
        row[name] = edge_metrics(averaged, data.truth)["auroc"]
        row[name + ", mean with graph_"] = edge_metrics(0.5 * averaged + 0.5 * g.graph_, data.truth)["auroc"]
    return row


def _per_output_graph(g: SparseGraph, field, path, design) -> np.ndarray:
    """One library's graph with each output's row read at the path stage that minimises *that output's*
    mean log held-out error over the folds (LassoCV's choice, one strength per output), instead of the stage
    that minimises the error summed over outputs; scaled to a largest off-diagonal score of 1."""
    folds = g.n_folds_
    held_out = (1.0 - design.weights[:folds]).bool()  # (F, N): each fold member's held-out rows
    curves = []
    with torch.no_grad():
        for state in path.states:
            field.load_state_dict(state)
            err = ((field(design.z)[:folds] - design.y[None]) ** 2)  # (F, N, n)
            per_fold = torch.stack([err[f][held_out[f]].mean(dim=0) for f in range(folds)])  # (F, n)
            curves.append(torch.log(per_fold.clamp_min(1e-12)).mean(dim=0))
    best = torch.stack(curves).argmin(dim=0)  # (n,) stage per output
    rows = [path.jacobian[int(best[i]), folds, i] for i in range(len(best))]
    graph = torch.stack(rows).numpy().astype(float)
    return _scaled(graph, ~np.eye(len(graph), dtype=bool))


def probe_per_output(data, seed: int) -> dict[str, float]:
    """``graph_`` with one path stage per output (:func:`_per_output_graph`), the libraries averaged as
    shipped; the shipped graph reads every output at one stage."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = _KeepDesigns(seed=seed, refine=False).fit(data.train.values, t=data.train.times)
    design = g.kept_designs_[id(g.scaler_)]
    graphs = {_library_name(field): _per_output_graph(g, field, path, design) for field, path, _ in design.fits}
    averaged = average_library_graphs(graphs, design.errors)
    return {"shipped": edge_metrics(g.graph_, data.truth)["auroc"],
            "stage per output": edge_metrics(averaged, data.truth)["auroc"],
            "stage per output, half with graph_": edge_metrics(0.5 * averaged + 0.5 * g.graph_, data.truth)["auroc"]}


def probe_forecast_weights(data, seed: int) -> dict[str, float]:
    """``graph_``'s two libraries averaged with weights from their folds' held-out *forecast* errors
    (``forecast_errors_``, the rule that picks the forecasting library) instead of their derivative errors,
    at powers 1, 2 and 4 (4 is the shipped power)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SparseGraph(seed=seed, refine=False).fit(data.train.values, t=data.train.times)
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"]}
    for power in (1.0, 2.0, 4.0):
        graph = (average_library_graphs(g.library_graphs_, g.forecast_errors_, power)
                 if len(g.forecast_errors_) == len(g.library_graphs_) else g.graph_)
        row[f"forecast-error weights, power {power:g}"] = edge_metrics(graph, data.truth)["auroc"]
    return row


def windowed_difference_data(series, k: int):
    """Difference quotients over windows of ``k`` consecutive intervals (overlapping, stride 1): the derivative
    ``(x_{a+k} - x_a) / (t_{a+k} - t_a)`` regressed on the trapezoid average of the observed states over the
    window (the weak form with a boxcar test function; ``k = 1`` is ``difference_data``'s midpoint rule, without
    its merging of short intervals). Noise in the target falls as 1 / k, bias in the state grows with it."""
    from sparsedyn.derivatives import DerivativeData, observed_points

    xs, ds, ids = [], [], []
    for j, (t, x) in enumerate(observed_points(series)):
        w = min(k, len(t) - 1)
        seg = np.diff(t)[:, None] * 0.5 * (x[1:] + x[:-1])  # trapezoid pieces, interval by interval
        cum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(seg, axis=0)])
        a = np.arange(len(t) - w)
        span = (t[a + w] - t[a])[:, None]
        xs.append((cum[a + w] - cum[a]) / span)
        ds.append((x[a + w] - x[a]) / span)
        ids.append(np.full(len(a), j))
    return DerivativeData(np.concatenate(xs), np.concatenate(ds), np.concatenate(ids))


@contextmanager
def _differences_design(make: Callable[[Any], Any]) -> Iterator[None]:
    """Inside: SparseGraph's differences design built by ``make(series)`` instead of ``difference_data``."""
    import sparsedyn.graph as graph_module

    original = graph_module.difference_data
    graph_module.difference_data = make
    try:
        yield
    finally:
        graph_module.difference_data = original


def _differences_replaced(data, seed: int, label: str, make: Callable[[Any, int], Any],
                          ks: tuple[int, ...]) -> dict[str, float]:
    """The shipped fit, the differences design alone, and for each ``k`` the design ``make(series, k)`` in place of
    the differences: as the only design, and inside the shipped automatic choice."""
    shipped = _quiet_fit(seed, data)
    row = {"shipped": edge_metrics(shipped.graph_, data.truth)["auroc"],
           "differences alone (k = 1)": edge_metrics(_quiet_fit(seed, data, design="differences").graph_,
                                                     data.truth)["auroc"]}
    for k in ks:
        with _differences_design(lambda series, k=k: make(series, k)):
            row[f"{label} k = {k} alone"] = edge_metrics(_quiet_fit(seed, data, design="differences").graph_,
                                                         data.truth)["auroc"]
            row[f"{label} k = {k} in auto"] = edge_metrics(_quiet_fit(seed, data).graph_, data.truth)["auroc"]
    return row


def probe_windows(data, seed: int) -> dict[str, float]:
    """The differences design with windows of 2 and 3 intervals (``windowed_difference_data``) in place of
    single intervals: as the only design, and inside the shipped automatic choice between the smoother and
    differences."""
    return _differences_replaced(data, seed, "windows", windowed_difference_data, (2, 3))


_GAUSS3 = (np.array([-np.sqrt(0.6), 0.0, np.sqrt(0.6)]), np.array([5 / 9, 8 / 9, 5 / 9]))  # Gauss-Legendre, [-1, 1]


def weak_form_data(series, k: int, power: int = 1):
    """The weak form with a smooth test function: for every window of ``k`` consecutive intervals (overlapping,
    stride 1; ``k`` cut to a trajectory's intervals) and the bump ``phi(s) = ((s - t_a) (t_b - s))^power`` on it,
    the derivative ``-int phi' x / int phi`` regressed on the state ``int phi x / int phi``, with ``x`` the
    piecewise-linear interpolant of the observations (integrals exact: 3-point Gauss-Legendre per interval; by
    parts, ``-int phi' x`` is the sum of the intervals' difference quotients weighted by ``phi``'s mass on
    each). A boxcar ``phi`` gives ``windowed_difference_data``; the bump weighs the window's middle intervals
    more, so that the target averages the noise of every observation in the window, not only of its ends."""
    from sparsedyn.derivatives import DerivativeData, observed_points

    nodes, weights = _GAUSS3
    xs, ds, ids = [], [], []
    for j, (t, x) in enumerate(observed_points(series)):
        w = min(k, len(t) - 1)
        h = np.diff(t)
        slope = np.diff(x, axis=0) / h[:, None]
        for a in range(len(t) - w):
            ta, tb = t[a], t[a + w]
            mass, state, deriv = 0.0, np.zeros(x.shape[1]), np.zeros(x.shape[1])
            for i in range(a, a + w):
                s = t[i] + 0.5 * h[i] * (nodes + 1.0)  # the nodes on [t_i, t_i+1]
                phi = ((s - ta) * (tb - s)) ** power * weights * 0.5 * h[i]
                lin = x[i] + np.outer((s - t[i]) / h[i], x[i + 1] - x[i])  # (3, n)
                mass += phi.sum()
                state += phi @ lin
                deriv += phi.sum() * slope[i]
            xs.append(state / mass)
            ds.append(deriv / mass)
            ids.append(j)
    return DerivativeData(np.array(xs), np.array(ds), np.array(ids))


def probe_weak(data, seed: int) -> dict[str, float]:
    """The differences design replaced by the weak form with a bump test function over windows of 3 and 5
    intervals (``weak_form_data``): as the only design, and inside the shipped automatic choice between the
    smoother and differences."""
    return _differences_replaced(data, seed, "weak form", weak_form_data, (3, 5))


def probe_ensemble(data, seed: int) -> dict[str, float]:
    """The designs' graphs averaged with equal weights (each scaled to its largest off-diagonal score) instead of
    the automatic choice between them: the smoother's and the differences' (``design_graphs_`` of one fit), and
    with the weak form over windows of 3 intervals (``weak_form_data``, a second fit) as a third design."""
    g = _quiet_fit(seed, data)
    off = ~np.eye(data.truth.shape[0], dtype=bool)
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"]}
    with _differences_design(lambda series: weak_form_data(series, 3)):
        weak = _quiet_fit(seed, data, design="differences").graph_
    graphs = {name: _scaled(graph, off) for name, graph in g.design_graphs_.items()}
    graphs["weak"] = _scaled(weak, off)
    for combo in (("smoothed", "differences"), ("smoothed", "differences", "weak"), ("smoothed", "weak")):
        if all(name in graphs for name in combo):
            row[f"mean of {' + '.join(combo)}"] = edge_metrics(np.mean([graphs[n] for n in combo], axis=0),
                                                                 data.truth)["auroc"]
    return row


def probe_design(data, seed: int) -> dict[str, float]:
    """The design rule, read off one fit (``design_graphs_``, ``design_errors_``): each design's graph alone, and
    the switch on the mean log one-step-error gap without the shipped rule's one-standard-error margin."""
    g = _quiet_fit(seed, data)
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"]}
    for name, graph in g.design_graphs_.items():
        row[f"{name} alone"] = edge_metrics(graph, data.truth)["auroc"]
    if len(g.design_graphs_) == 2:
        gap = np.log(np.clip(g.design_errors_["differences"], 1e-12, None)) - np.log(
            np.clip(g.design_errors_["smoothed"], 1e-12, None))
        pick = "differences" if gap.mean() < 0 else "smoothed"
        row["mean-gap switch"] = edge_metrics(g.design_graphs_[pick], data.truth)["auroc"]
    return row


def probe_smoother(data, seed: int) -> dict[str, float]:
    """The GCV smoothing spline (``smooth="spline"``) against the shipped local smoother: the smoothed design alone
    with each, and the spline in the automatic design choice (the shipped fit's ``design_graphs_`` give the local
    smoother's design alone)."""
    g = _quiet_fit(seed, data)
    row = {"shipped": edge_metrics(g.graph_, data.truth)["auroc"],
           "local smoother alone": edge_metrics(g.design_graphs_["smoothed"], data.truth)["auroc"]}
    spline = _quiet_fit(seed, data, smooth="spline")
    row["spline alone"] = edge_metrics(spline.design_graphs_["smoothed"], data.truth)["auroc"]
    row["spline in auto"] = edge_metrics(spline.graph_, data.truth)["auroc"]
    if len(g.design_errors_) == 2:  # three designs, the local smoother's the default (rule fixed before the run)
        errors = {"local": g.design_errors_["smoothed"], "differences": g.design_errors_["differences"],
                  "spline": spline.design_errors_["smoothed"]}
        graphs = {"local": g.design_graphs_["smoothed"], "differences": g.design_graphs_["differences"],
                  "spline": spline.design_graphs_["smoothed"]}
        row["three designs"] = edge_metrics(graphs[_pick_of_three(errors)], data.truth)["auroc"]
    return row


def _pick_of_three(errors: dict[str, np.ndarray]) -> str:
    """The local smoother unless another design's one-step errors beat it by one standard error of the folds'
    paired log-error differences (the shipped rule's test); of two that do, the lower mean log error."""
    log = {name: np.log(np.clip(e, 1e-12, None)) for name, e in errors.items()}
    passing = {}
    for name in ("differences", "spline"):
        gap = log[name] - log["local"]
        gap = gap[np.isfinite(gap)]
        if len(gap) >= 2 and gap.mean() + gap.std(ddof=1) / np.sqrt(len(gap)) < 0:
            passing[name] = gap.mean()
    return min(passing, key=passing.get) if passing else "local"


def summary(rows: list[dict]) -> str:
    """Each candidate's mean and its paired difference to the shipped behaviour, overall and per regime group."""
    lines = []
    for group, keep in (("all", lambda r: True), ("standard", lambda r: r["regime"] == "standard"),
                        ("hard regimes", lambda r: r["regime"] != "standard")):
        sub = [r for r in rows if keep(r)]
        if not sub or (group != "all" and len(sub) == len(rows)):  # one group alone: "all" said it
            continue
        base = np.array([r["shipped"] for r in sub])
        lines.append(f"{group}: {len(sub)} data sets, shipped mean {base.mean():.4f}")
        for name in sub[0]["values"]:
            if name in ("shipped", "switched"):
                continue
            d = np.array([r["values"][name] for r in sub]) - base
            lo, hi = bootstrap_ci(d, n_boot=4000)
            lines.append(f"  {name:32s} mean {base.mean() + d.mean():.4f}  paired {d.mean():+.4f} [{lo:+.4f}, "
                         f"{hi:+.4f}]  better / worse {(d > 1e-9).sum()} / {(d < -1e-9).sum()}")
        if "switched" in sub[0]["values"]:
            lines.append(f"  switched library on {int(sum(r['values']['switched'] for r in sub))} data sets")
    return "\n".join(lines)


PROBES: dict[str, Callable[[Any, argparse.Namespace], dict[str, float]]] = {
    "readouts": lambda data, a: probe_readouts(data, a.seed),
    "steps": lambda data, a: probe_steps(data, a.seed),
    "blowup": lambda data, a: probe_blowup(data, a.seed, a.horizon),
    "adaptive": lambda data, a: probe_adaptive(data, a.seed, a.variants),
    "shoot": lambda data, a: probe_shoot(data, a.seed),
    "per_output": lambda data, a: probe_per_output(data, a.seed),
    "forecast_weights": lambda data, a: probe_forecast_weights(data, a.seed),
    "windows": lambda data, a: probe_windows(data, a.seed),
    "design": lambda data, a: probe_design(data, a.seed),
    "weak": lambda data, a: probe_weak(data, a.seed),
    "ensemble": lambda data, a: probe_ensemble(data, a.seed),
    "smoother": lambda data, a: probe_smoother(data, a.seed),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", choices=PROBES, default="readouts")
    ap.add_argument("--families", default="sparse_tanh,lorenz96,hill,dysts,glv,coupled_rossler,hyper_rossler")
    ap.add_argument("--regimes", default=HARD)
    ap.add_argument("--instances", default="0,1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--horizon", type=float, default=3.0, help="blowup: multiples of each trajectory's span")
    ap.add_argument("--variants", default="dense:1,best:1,dense:0.5", help="adaptive: start:gamma, ...")
    ap.add_argument("--out", default="graph_probes.jsonl")
    ap.add_argument("--summary", default="", help="only print the summary of these JSON-lines files")
    args = ap.parse_args()
    if args.summary:
        rows = []
        for name in args.summary.split(","):
            with open(name) as f:
                rows += [json.loads(line) for line in f]
        print(summary(rows))
        return
    torch.set_num_threads(1)
    print(f"# graph_probes {args.probe}: {platform.machine()}, torch {torch.__version__}, 1 thread", flush=True)
    rows = []
    with open(args.out, "a") as out:
        for family in args.families.split(","):
            for regime in args.regimes.split(","):
                for instance in map(int, args.instances.split(",")):
                    data = make_dataset(family, instance, REGIMES[regime], args.seed)
                    values = PROBES[args.probe](data, args)
                    row = {"family": family, "regime": regime, "instance": instance, "seed": args.seed,
                           "shipped": values["shipped"], "values": values}
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(family, regime, instance, {k: round(v, 4) for k, v in values.items()}, flush=True)
    print(summary(rows))


if __name__ == "__main__":
    main()
