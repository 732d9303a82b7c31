"""Bring finished runs' analysis metrics up to date from their saved models, without training.

Metrics join sparsedyn over time (the Jacobian recovery score, for one); a finished run records
those of its day. :func:`rescore_runs` rebuilds each completed run's experiment from its
``config.yaml`` (one task per distinct task section, so data are simulated or loaded once), loads
the reported model (``model.pt``) and recomputes :func:`~sparsedyn.runner.analyse` — sparsity and
graph recovery, which depend on the weights alone — then rewrites ``results.json`` atomically.
Forecast errors are left as the run recorded them. SINDy runs, failed and diverged runs are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import io
from .tasks.base import Task


def rescore_run(run_dir: str | Path, task: Task | None = None) -> tuple[dict[str, float], Task]:
    """Recompute one completed run's analysis metrics and write them into its ``results.json``; returns the
    metrics that changed or were added (``{}``: already up to date) and the task (to reuse)."""
    from .runner import analyse, load_run

    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    exp = load_run(run_dir, "model.pt", task)
    fresh = analyse(exp.model, exp.task)
    old = results.get("metrics", {})
    changed = {k: v for k, v in fresh.items() if k not in old or old[k] != v}
    if changed:
        results["metrics"] = {**old, **fresh}
        io.write_json(run_dir / "results.json", results)
    return changed, exp.task


def rescore_runs(runs_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """:func:`rescore_run` for every completed run under ``runs_dir``. Returns counts and the names of the
    metrics that changed anywhere."""
    import yaml
    from tqdm.auto import tqdm

    from .rundir import fingerprint

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no runs directory {runs_dir}")
    dirs = sorted(f.parent for f in runs_dir.rglob("results.json"))
    if not dirs:
        from .report import ReportError

        raise ReportError(f"no finished runs under {runs_dir} (no results.json files)")
    tasks: dict[str, Task] = {}
    counts = {"rescored": 0, "up_to_date": 0, "skipped": 0}
    names: set[str] = set()
    for d in tqdm(dirs, desc=f"rescore {runs_dir.name}", disable=not progress):
        try:
            status = json.loads((d / "results.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError) as e:  # corrupt or not an object: name the file, go on
            print(f"sparsedyn rescore: {d / 'results.json'}: unreadable ({type(e).__name__}: {e}); skipped")
            counts["skipped"] += 1
            continue
        config = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").exists() else None
        if status != "completed" or config is None or not (d / "model.pt").exists() \
                or config.get("model", {}).get("kind") == "sindy":
            counts["skipped"] += 1
            continue
        key = fingerprint(config.get("task", {}))
        changed, tasks[key] = rescore_run(d, tasks.get(key))
        counts["rescored" if changed else "up_to_date"] += 1
        names.update(changed)
    return {**counts, "metrics": sorted(names)}
