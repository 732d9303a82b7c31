"""Records of run directories: what every run wrote, read back, and grouped over seeds.

``collect`` reads every run directory (``point.json`` + ``results.json`` or ``error.json``;
plain ``sparsedyn run`` directories too); ``aggregate`` groups runs that differ only in their
seed. Reading run directories is all it does: no experiment is rebuilt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Group:
    """The runs of one sweep point (all its seeds)."""

    variant: str
    labels: dict[str, str]
    order: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "completed"]

    @property
    def failures(self) -> int:
        """Runs that raised or diverged (runs not started yet are not failures)."""
        return sum(r["status"] in ("failed", "diverged") for r in self.runs)

    def worse_than(self, metric: str, value: float) -> int:
        """Failures plus completed runs whose ``metric`` is no better than a trivial baseline's ``value``."""
        return self.failures + int(np.sum(self.values(metric) >= value))

    @property
    def finished(self) -> int:
        return sum(r["status"] != "missing" for r in self.runs)

    def values(self, metric: str) -> np.ndarray:
        return np.array([r["metrics"][metric] for r in self.ok if metric in r["metrics"]], dtype=float)

    def by_seed(self, metric: str) -> dict[int, float]:
        """``{seed: value}`` of ``metric`` over the completed runs (for comparisons paired by seed)."""
        return {int(r["seed"]): float(r["metrics"][metric]) for r in self.ok
                if metric in r["metrics"] and r.get("seed") is not None}

    def mean(self, metric: str) -> float:
        v = self.values(metric)
        return float(np.mean(v)) if v.size else math.nan

    def sd(self, metric: str) -> float:
        v = self.values(metric)
        return float(np.std(v, ddof=1)) if v.size > 1 else math.nan

    def cell(self, metric: str) -> str:
        m, s = self.mean(metric), self.sd(metric)
        if math.isnan(m):
            return "—"
        return f"{m:.3g} ± {s:.2g}" if not math.isnan(s) else f"{m:.3g}"

    def label(self, skip: tuple[str, ...] = ()) -> str:
        extra = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in self.labels.items() if k not in skip)
        return f"{self.variant} ({extra})" if extra else self.variant


class ReportError(ValueError):
    """A report cannot be made as asked (no runs there, an unknown metric or variant, ...)."""


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(content, None)``, or ``(None, reason)`` for an unreadable or corrupt file."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"corrupt {path.name} ({type(e).__name__}: {e})"


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One record per run directory below ``runs_dir`` (completed, diverged, failed or missing).

    Sweep points are found by their ``point.json``; directories of plain ``sparsedyn run``
    calls (a ``results.json``, no ``point.json``) are runs too, their variant being the
    config's name. A corrupt ``results.json`` makes its run a failure whose reason names the file.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ReportError(f"runs directory not found: {runs_dir}")
    manifest = runs_dir / "sweep.json"
    order = (_read_json(manifest)[0] or {}).get("points", []) if manifest.exists() else []
    rank = {p: i for i, p in enumerate(order)}
    dirs = {f.parent for f in runs_dir.rglob("point.json")} | {f.parent for f in runs_dir.rglob("results.json")}
    records: list[dict[str, Any]] = []
    for d in sorted(dirs):
        point, _ = _read_json(d / "point.json") if (d / "point.json").exists() else (None, None)
        rel = str(d.relative_to(runs_dir))
        rec = {"variant": None, "labels": {}, "seed": None, **(point or {}), "run_dir": str(d),
               "order": rank.get(rel, len(rank) + len(records))}
        if (d / "results.json").exists():
            res, problem = _read_json(d / "results.json")
            if res is None:
                print(f"sparsedyn report: {d / 'results.json'}: {problem}; counted as failed")
                rec.update(status="failed", metrics={}, error=f"{d / 'results.json'}: {problem}")
            else:
                rec.update(status=res["status"], metrics=with_r2(res["metrics"], res.get("baselines") or {}),
                           seconds=res.get("seconds"), acknowledgement=res.get("acknowledgement"),
                           baselines=res.get("baselines") or {})
                rec["variant"] = rec["variant"] or res.get("name", d.name)
                rec["seed"] = rec["seed"] if rec["seed"] is not None else res.get("seed")
        elif (d / "error.json").exists():
            err, problem = _read_json(d / "error.json")
            rec.update(status="failed", metrics={}, error=(err or {}).get("error", problem))
        else:
            rec.update(status="missing", metrics={})
        rec["variant"] = rec["variant"] or rel
        records.append(rec)
    if not records:
        raise ReportError(f"no runs under {runs_dir} (no point.json or results.json files)")
    _label_tasks(records)
    return records


def _task_of(run_dir: Path) -> tuple[str, str] | None:
    """(readable name, fingerprint) of the task a run directory's config.yaml describes, or None."""
    import yaml

    from .rundir import fingerprint

    try:
        task = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("task") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    name = str(task.get("name", "systems"))
    if task.get("system"):
        name += f"/{task['system']}"
    return name, fingerprint(task)


def _label_tasks(records: list[dict[str, Any]]) -> None:
    """Give every run without a ``task`` label one from its config, so that a folder mixing tasks is
    reported (and scored against trivial predictors) per task: the task's name and system, plus a short
    fingerprint where two different task configs share a name."""
    found = {id(r): _task_of(Path(r["run_dir"])) for r in records if "task" not in r["labels"]}
    names: dict[str, set[str]] = {}
    for t in found.values():
        if t is not None:
            names.setdefault(t[0], set()).add(t[1])
    if len({t for t in found.values() if t is not None}) < 2:
        return  # one task (or none readable): nothing to separate
    for r in records:
        t = found.get(id(r))
        if t is not None:
            r["labels"] = {**r["labels"], "task": t[0] if len(names[t[0]]) == 1 else f"{t[0]} [{t[1][:6]}]"}


def with_r2(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> dict[str, float]:
    """``metrics`` plus ``test_r2 = 1 - test_mse / (test MSE of predicting the training mean)`` where both
    are known: the share of the test variance a forecaster explains (1 perfect, 0 no better than the mean)."""
    mean = baselines.get("train_mean", {}).get("test_mse")
    if "test_mse" not in metrics or not mean or "test_r2" in metrics:
        return metrics
    return {**metrics, "test_r2": 1.0 - metrics["test_mse"] / mean}


def block_of(labels: dict[str, str], by: str | None) -> str:
    """The table a run belongs to: its label on axis ``by`` ("all" without one)."""
    return labels.get(by, "all") if by else "all"


def aggregate(records: list[dict[str, Any]]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for r in records:
        key = (r["variant"], tuple(sorted(r["labels"].items())))
        g = groups.setdefault(key, Group(r["variant"], dict(r["labels"]), r["order"]))
        g.order = min(g.order, r["order"])
        g.runs.append(r)
    return sorted(groups.values(), key=lambda g: g.order)
