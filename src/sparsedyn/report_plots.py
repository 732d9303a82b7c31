"""Report figures: error vs sparsity per method, and dependency matrices true vs learned."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .run_records import Group, block_of


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_vs_sparsity(groups: list[Group], by: str | None, sparsity: str, path: Path, error: str = "test_mse",
                      footer: str = "") -> Path:
    """One panel per block; one marker per run, seed means of a method's points joined by a line."""
    plt = _plt()
    blocks = list(dict.fromkeys(block_of(g.labels, by) for g in groups))
    fig, axes = plt.subplots(1, len(blocks), figsize=(5 * len(blocks), 4), squeeze=False)
    variants = list(dict.fromkeys(g.variant for g in groups))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for ax, block in zip(axes[0], blocks):
        for v in variants:
            gs = [g for g in groups if g.variant == v and (not by or g.labels.get(by, "all") == block)]
            xs, ys = [], []
            for g in gs:
                for r in g.ok:
                    ax.scatter(r["metrics"].get(sparsity, math.nan), r["metrics"].get(error, math.nan),
                               color=colours[v], s=12, alpha=0.5)
                xs.append(g.mean(sparsity))
                ys.append(g.mean(error))
            ax.plot(xs, ys, "-o", color=colours[v], label=v, ms=4)
        ax.set_yscale("log")
        ax.set_xlabel(sparsity.replace("_", " "))
        ax.set_ylabel(error.replace("_", " "))
        ax.set_title(block, fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="best")
    return _save(fig, path, footer)


def per_method(groups: list[Group], metric: str, path: Path, reference: tuple[str, float] | None = None,
               footer: str = "") -> Path:
    """One column per method: a dot per seed, a bar at the mean; a dashed line at a trivial baseline."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(groups)), 4))
    for i, g in enumerate(groups):
        v = g.values(metric)
        ax.scatter(np.full(v.size, i), v, s=18, alpha=0.7, color=plt.cm.tab10(i % 10))
        if v.size:
            ax.hlines(v.mean(), i - 0.3, i + 0.3, color="k")
    if reference is not None:
        ax.axhline(reference[1], ls="--", color="0.5", label=f"trivial predictor ({reference[1]:g})")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(groups)), [g.label() for g in groups], rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(metric.replace("_", " "))
    return _save(fig, path, footer)


def dependency_grid(chosen: dict[str, dict[str, Group]], truths: dict[str, np.ndarray], path: Path,
                    footer: str = "") -> Path:
    """Rows: blocks (systems); columns: the true graph then each method's learned structure (first seed)."""
    plt = _plt()
    blocks = list(chosen)
    n_cols = 1 + max(len(v) for v in chosen.values())
    fig, axes = plt.subplots(len(blocks), n_cols, figsize=(1.6 * n_cols, 1.8 * len(blocks)), squeeze=False)
    for row, block in zip(axes, blocks):
        for ax in row:
            ax.axis("off")
        truth = truths.get(block)
        if truth is not None:
            row[0].imshow(truth, cmap="Greys", vmin=0, vmax=1)
            row[0].set_title(f"{block}\ntrue", fontsize=7)
        for ax, (variant, g) in zip(row[1:], chosen[block].items()):
            runs = sorted(g.ok, key=lambda r: r["seed"])
            if not runs or not (Path(runs[0]["run_dir"]) / "dependency.pt").exists():
                continue
            D = torch.load(Path(runs[0]["run_dir"]) / "dependency.pt").numpy()
            ax.imshow(D, cmap="Greys", vmin=0, vmax=1)
            ax.set_title(variant, fontsize=7)
    return _save(fig, path, footer)


def _save(fig, path: Path, footer: str) -> Path:
    """Write the figure with the command and machine that produced it in its footer."""
    import textwrap

    lines = textwrap.wrap(footer, width=int(fig.get_figwidth() * 17)) if footer else []
    if lines:  # wrapped to the figure's width so the machine at the end stays visible
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03 * len(lines), 1, 1))
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def forecast_figure(chosen: dict[str, dict[str, Group]], path: Path, footer: str = "", n_dims: int = 3,
                    max_methods: int = 4) -> Path | None:
    """Truth vs forecasts of the first test sequence (first seed of each chosen point, as its run
    wrote them in ``forecasts.npz``) for the dims with the largest variance; one column per block
    (condition), up to ``max_methods`` methods each. None if no run wrote forecasts."""
    plt = _plt()
    candidates = {b: [(v, _first_forecast(g)) for v, g in chosen[b].items()] for b in chosen}
    found: dict[str, list[tuple[Any, Any]]] = {b: [(v, f) for v, f in fs if f is not None][:max_methods]
                                                  for b, fs in candidates.items()}
    blocks = [b for b in found if found[b]]
    if not blocks:
        return None
    fig, axes = plt.subplots(n_dims, len(blocks), figsize=(4.2 * len(blocks), 1.9 * n_dims), squeeze=False)
    for col, block in enumerate(blocks):
        first = found[block][0][1]
        t, truth = first["t"], first["truth"]
        dims = np.argsort(truth.var(0))[::-1][:n_dims]
        for row, d in enumerate(dims):
            axes[row, col].plot(t, truth[:, d], color="black", lw=1.5, label="truth")
            axes[row, col].set_ylabel(f"dim {d}", fontsize=7)
            for variant, f in found[block]:
                axes[row, col].plot(t, f["forecast"][:, d], lw=1, label=variant)
        axes[0, col].set_title(f"{block}: test sequence 1", fontsize=8)
        axes[-1, col].set_xlabel("time", fontsize=7)
        axes[0, col].legend(fontsize=6)
    return _save(fig, path, footer)


def _first_forecast(group: Group) -> dict[str, np.ndarray] | None:
    runs = sorted(group.ok, key=lambda r: r["seed"])
    path = Path(runs[0]["run_dir"]) / "forecasts.npz" if runs else None
    if path is None or not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def across_blocks(chosen: dict[str, dict[str, Group]], metrics: list[str], path: Path,
                  trivial: dict[str, dict[str, dict[str, float]]] | None = None, footer: str = "") -> Path:
    """One panel per metric, the blocks (e.g. data regimes) along x: each method's selected point as a
    dot per seed and a line through the seed means; where the runs recorded trivial predictors, the best of
    them per block as a grey dashed line (a model that does not beat it has learned nothing usable)."""
    plt = _plt()
    blocks = list(chosen)
    variants = list(dict.fromkeys(v for b in blocks for v in chosen[b]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for k, v in enumerate(variants):
            colour, shift = plt.cm.tab10(k % 10), 0.08 * (k - (len(variants) - 1) / 2)
            means = [chosen[b][v].mean(metric) if v in chosen[b] else math.nan for b in blocks]
            for x, b in enumerate(blocks):
                vals = chosen[b][v].values(metric) if v in chosen[b] else np.array([])
                ax.scatter(np.full(vals.size, x + shift), vals, color=colour, s=10, alpha=0.5)
            ax.plot(np.arange(len(blocks)) + shift, means, "-o", color=colour, label=v, ms=4)
        floor = [min((s[metric] for s in (trivial or {}).get(b, {}).values() if metric in s), default=math.nan)
                 for b in blocks]
        if not all(math.isnan(f) for f in floor):
            ax.plot(range(len(blocks)), floor, "--", color="0.5", label="best trivial predictor")
        if metric.endswith("mse"):
            ax.set_yscale("log")
        ax.set_xticks(range(len(blocks)), blocks, rotation=20, fontsize=8)
        ax.set_ylabel(metric.replace("_", " "))
    axes[0][0].legend(fontsize=7, loc="best")
    return _save(fig, path, footer)
