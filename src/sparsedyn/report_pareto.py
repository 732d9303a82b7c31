"""Methods compared on their error-vs-sparsity fronts, not by one selection rule.

A method's points (its strengths, each a :class:`~sparsedyn.run_records.Group` of seeds) trace a
curve; its *front* keeps the points no other point of the method beats on both mean error (lower)
and mean sparsity (higher). Three readings compare methods fairly on it, per block (e.g. system):

- **sparsity at matched error**: the highest mean weight / feature sparsity among the method's
  points whose mean ``metric`` (validation error by default, so no test number chooses) is within
  ``within`` of the baseline's (vanilla's), and the best recovery AUROC among those points;
- **error at matched sparsity**: for each level ``s``, the lowest mean test error among the points
  with mean sparsity >= ``s``, with that point's AUROC (recovery at matched sparsity).

A method none of whose points reaches a level gets "—": it never got that sparse.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .run_records import Group, block_of

ROUNDING = 5e-4  # pruning to 90% of 65,536 weights leaves a sparsity of 0.899994: it counts as 0.9
LEVELS = {"weight_sparsity": (0.5, 0.9), "feature_sparsity": (0.5,), "recurrent_sparsity": (0.9, 0.98)}


def sparsity_kinds(groups: list[Group]) -> list[str]:
    """The sparsities the runs report, in ``LEVELS`` order. Where runs prune only a recurrent matrix,
    its sparsity alone: their weight sparsity mostly counts input and read-out weights no one pruned."""
    kinds = [k for k in LEVELS if any(math.isfinite(g.mean(k)) for g in groups)]
    return ["recurrent_sparsity"] if "recurrent_sparsity" in kinds else kinds


def pareto_front(errors: np.ndarray, sparsities: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both error (lower) and sparsity (higher)."""
    keep = np.ones(len(errors), dtype=bool)
    for i in range(len(errors)):
        better = (errors <= errors[i]) & (sparsities >= sparsities[i]) & (
            (errors < errors[i]) | (sparsities > sparsities[i]))
        keep[i] = not better.any()
    return keep


def by_block_and_variant(groups: list[Group], by: str | None) -> dict[str, dict[str, list[Group]]]:
    out: dict[str, dict[str, list[Group]]] = {}
    for g in groups:
        out.setdefault(block_of(g.labels, by), {}).setdefault(g.variant, []).append(g)
    return out


def front(points: list[Group], error: str, sparsity: str) -> list[Group]:
    """The method's Pareto-optimal points (finite means), sorted by sparsity."""
    pts = [g for g in points if math.isfinite(g.mean(error)) and math.isfinite(g.mean(sparsity))]
    if not pts:
        return []
    keep = pareto_front(np.array([g.mean(error) for g in pts]), np.array([g.mean(sparsity) for g in pts]))
    return sorted((g for g, k in zip(pts, keep) if k), key=lambda g: g.mean(sparsity))


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def pareto_table(points: dict[str, list[Group]], metric: str, within: float, baseline: str | None,
                 error: str = "test_mse") -> tuple[list[str], list[list[str]]] | None:
    """One row per method of a block: the readings in the module docstring (None without sparsity)."""
    kinds = sparsity_kinds([g for gs in points.values() for g in gs])
    if not kinds:
        return None
    base = [g.mean(metric) for g in points.get(baseline or "", []) if math.isfinite(g.mean(metric))]
    limit = (1.0 + within) * min(base) if base else math.nan
    has_auroc = any(math.isfinite(g.mean("recovery_auroc")) for gs in points.values() for g in gs)
    matched = bool(base)  # "sparsity at matched error" needs the baseline's error
    header = ["method", "points"]
    if matched:
        header += [f"max {k.split('_')[0]} sp. ({metric} within {within:.0%} of {baseline})" for k in kinds]
        header += [f"best AUROC (within {within:.0%})"] if has_auroc else []
    for k in kinds:
        for s in LEVELS[k]:
            header.append(f"{error} at {k.split('_')[0]} sp. >= {s:g}" + (" (AUROC)" if has_auroc else ""))
    rows = []
    for variant, gs in points.items():
        ok = [g for g in gs if g.mean(metric) <= limit]
        row = [variant, str(len(gs))]
        if matched:
            row += [_fmt(max((g.mean(k) for g in ok), default=math.nan)) for k in kinds]
            if has_auroc:
                row.append(_fmt(max((g.mean("recovery_auroc") for g in ok), default=math.nan)))
        for k in kinds:
            for s in LEVELS[k]:
                sparse = [g for g in gs if g.mean(k) >= s - ROUNDING and math.isfinite(g.mean(error))]
                if not sparse:
                    row.append("—")
                    continue
                best = min(sparse, key=lambda g: g.mean(error))
                row.append(_fmt(best.mean(error)) + (f" ({_fmt(best.mean('recovery_auroc'), 2)})" if has_auroc else ""))
        rows.append(row)
    return header, rows


def pareto_tables(groups: list[Group], by: str | None, metric: str, within: float, baseline: str | None,
                  error: str = "test_mse") -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per block, :func:`pareto_table` (blocks whose runs report no sparsity are left out)."""
    tables = {}
    for block, points in by_block_and_variant(groups, by).items():
        table = pareto_table(points, metric, within, baseline, error)
        if table is not None:
            tables[block] = table
    return tables


def plot_fronts(groups: list[Group], by: str | None, path: Path, error: str = "test_mse",
                baseline: str | None = "vanilla", highlight: str = "pathreg",
                trivial: dict[str, dict[str, float]] | None = None, footer: str = "") -> Path | None:
    """One row per block, one column per sparsity kind: each method's front (mean over seeds), its
    dominated points faint, the baseline's error dashed, ``highlight``'s front drawn thick; ``trivial``:
    per block, the trivial predictors' errors (dotted). None when no finished run reports a sparsity."""
    from .report_plots import _plt, _save

    plt = _plt()
    blocks = by_block_and_variant(groups, by)
    kinds = sparsity_kinds(groups)
    if not kinds:
        return None
    fig, axes = plt.subplots(len(blocks), len(kinds), figsize=(5.2 * len(kinds), 3.8 * len(blocks)), squeeze=False)
    variants = list(dict.fromkeys(g.variant for g in groups))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for row, (block, points) in zip(axes, blocks.items()):
        refs = [g.mean(error) for g in points.get(baseline or "", [])] + list((trivial or {}).get(block, {}).values())
        refs = [r for r in refs if math.isfinite(r)]
        cap = 3 * max(refs) if refs else math.inf  # a diverged model must not flatten every front
        for ax, kind in zip(row, kinds):
            shown = list(refs)  # every value drawn, capped: the axis ends just above the highest
            for v, gs in points.items():
                if v == baseline:
                    for g in gs:
                        ax.axhline(g.mean(error), ls="--", color="k", lw=1, label=f"{v} ({g.mean(error):.3g})")
                    continue
                xs, ys = np.array([g.mean(kind) for g in gs]), np.array([g.mean(error) for g in gs])
                ax.scatter(xs, np.minimum(ys, cap), color=colours[v], s=10, alpha=0.35)
                shown += [float(y) for y in np.minimum(ys, cap) if math.isfinite(y)]
                off = ys > cap
                if off.any():
                    ax.scatter(xs[off], np.full(off.sum(), cap), marker="^", color=colours[v], s=30)
                f = [g for g in front(gs, error, kind) if g.mean(error) <= cap]
                ax.plot([g.mean(kind) for g in f], [g.mean(error) for g in f], "-o", color=colours[v], ms=4,
                        lw=2.5 if v == highlight else 1.0, label=v + (" (^: off scale)" if off.any() else ""))
            for name, value in (trivial or {}).get(block, {}).items():
                ax.axhline(value, ls=":", color="0.5", lw=1, label=f"{name} ({value:.3g})")
            ax.set_yscale("log")
            if shown and min(shown) > 0:
                ax.set_ylim(min(shown) / 1.1, max(shown) * 1.3)
            ax.set_xlabel(f"{kind.replace('_', ' ')} (mean over seeds)")
            ax.set_ylabel(error.replace("_", " "))
            ax.set_title(f"{block}: Pareto fronts", fontsize=10)
        row[-1].legend(fontsize=6, loc="best")
    return _save(fig, path, footer)
