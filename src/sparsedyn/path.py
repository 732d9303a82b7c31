"""Regularisation paths: one method's strength raised step by step, each point warm-started.

The lassonet package's ``path`` is the anchor: train the dense model once (strength 0), then
raise the strength along a grid, each point starting from the previous point's weights at the
end of its sparsification epochs (``sparsified.pt``), each fine-tuned and scored like any run.
One command gives a method's whole error-vs-sparsity curve. Every point is an ordinary run
directory with a ``point.json``, so ``sparsedyn report`` reads a path like a sweep; ``path.csv``
and ``path.png`` summarise it, with the Pareto front (no other point has both lower error and
higher sparsity) marked.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .config import ConfigError, parse_config
from .report_pareto import pareto_front


def default_param(spec: dict[str, Any]) -> str:
    """The strength parameter a method declares (``Method.strength``): ``lam``, PathReg's ``lambda_paths``
    or pruning's ``sparsity``."""
    from .methods.registry import METHODS

    cls = METHODS.get(str(spec.get("name")))
    if cls is None or cls.strength is None:
        raise ConfigError(f"method {spec.get('name')!r} declares no strength parameter; pass --param")
    return cls.strength


def geometric(start: float, stop: float, num: int, dense: bool = True) -> list[float]:
    """``num`` strengths from ``start`` to ``stop`` spaced by a constant factor, after a 0 if ``dense``."""
    if not 0 < start < stop or num < 2:
        raise ConfigError(f"a path needs 0 < start < stop and num >= 2, got {start}, {stop}, {num}")
    return ([0.0] if dense else []) + [float(v) for v in np.geomspace(start, stop, num)]


def run_path(config: dict[str, Any], out_dir: str | Path, values: list[float], method: int = 0,
             param: str | None = None, root: Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run the path; return one row per point (strength, metrics). Finished points are kept as they are."""
    from tqdm.auto import tqdm

    from .runner import run_experiment
    from .sweep import Point, _label

    methods = config.get("methods") or []
    if not 0 <= method < len(methods):
        raise ConfigError(f"--method {method}: the config has {len(methods)} method(s)")
    param = param or default_param(methods[method])
    if any(v < 0 for v in values) or list(values) != sorted(values):
        raise ConfigError(f"path strengths must be >= 0 and increasing, got {values}")
    out, rows, previous = Path(out_dir), [], None
    name = methods[method]["name"]
    for value in tqdm(values, desc=f"path {name}.{param}", disable=not progress):
        raw = copy.deepcopy(config)
        raw["methods"][method][param] = value
        raw["name"] = f"{config.get('name', 'experiment')}/path/{name}"
        if previous is not None:
            raw["warm_start"] = str((previous / "sparsified.pt").resolve())  # not relative to the config
        cfg = parse_config(raw, root=root)
        run_dir = out / f"{param}={_label(value)}"
        io.write_json(run_dir / "point.json", {"variant": name, "labels": {param: _label(value)}, "seed": cfg.seed,
                                               "path": True})
        if Point(name, {param: _label(value)}, cfg.seed, cfg.model_dump(), run_dir).status() == "complete":
            res = json.loads((run_dir / "results.json").read_text())  # a finished point of this very config
        else:
            res = run_experiment(cfg, run_dir, resume=(run_dir / "last.pt").exists(), overwrite=True)
        rows.append({param: value, "status": res["status"], **res["metrics"]})
        previous = run_dir
    io.write_csv(out / "path.csv", rows)
    return rows


def plot_path(rows: list[dict[str, Any]], param: str, path: Path, footer: str = "") -> Path:
    """Test error against weight and feature sparsity along the path, the Pareto front joined."""
    from .report_plots import _plt, _save

    error = next(k for k in ("test_mse", "test_ppl", "test_error_cm") if k in rows[0])
    plt = _plt()
    kinds = [k for k in ("weight_sparsity", "feature_sparsity", "recurrent_sparsity") if k in rows[0]]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.6), squeeze=False)
    e = np.array([r[error] for r in rows], dtype=float)
    for ax, kind in zip(axes[0], kinds):
        s = np.array([r[kind] for r in rows], dtype=float)
        ax.plot(s, e, "o", color="0.6")
        for r, x, y in zip(rows, s, e):
            ax.annotate(f"{r[param]:.2g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(e, s)
        order = np.argsort(s[front])
        ax.plot(s[front][order], e[front][order], "-o", color="C0", label="Pareto front")
        ax.set_xlabel(kind.replace("_", " "))
        ax.set_ylabel(error.replace("_", " "))
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"regularisation path ({param} at each point)", fontsize=9)
    return _save(fig, path, footer)
