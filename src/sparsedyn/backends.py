"""Where sweep points run: a local process pool (default) or Ray (local or a cluster).

Both call the same :func:`execute_point` in a fresh worker with one torch thread, so a point
gives the same numbers whichever backend runs it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from . import io

Summary = dict[str, Any]


def execute_point(config: dict[str, Any], run_dir: str) -> Summary:
    """Run (or resume) one point; never raises: a failure is written to ``error.json``."""
    import torch

    from .config import parse_config
    from .runner import run_experiment

    torch.set_num_threads(1)
    run_dir_p = Path(run_dir)
    try:
        resume = (run_dir_p / "last.pt").exists()
        res = run_experiment(parse_config(config), run_dir_p, resume=resume)
        res.pop("_experiment", None)
        (run_dir_p / "error.json").unlink(missing_ok=True)
        return {"run_dir": run_dir, "status": res["status"], "resumed": resume}
    except Exception as e:  # recorded, never propagated: one bad point must not stop a sweep
        io.write_json(run_dir_p / "error.json", {"error": f"{type(e).__name__}: {e}",
                                                 "traceback": traceback.format_exc()})
        return {"run_dir": run_dir, "status": "failed", "error": f"{type(e).__name__}: {e}"}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_local(jobs: Iterable[tuple[dict, str]], workers: int | None = None,
              on_done: Callable[[Summary], None] | None = None) -> list[Summary]:
    """Run jobs ``(config, run_dir)`` on a pool of ``workers`` processes (default: CPU count)."""
    jobs = list(jobs)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    out = []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(execute_point, cfg, rd) for cfg, rd in jobs]
        for f in as_completed(futures):
            out.append(f.result())
            if on_done:
                on_done(out[-1])
    return out


def run_ray(jobs: Iterable[tuple[dict, str]], address: str | None = None, workers: int | None = None,
            on_done: Callable[[Summary], None] | None = None) -> list[Summary]:
    """Run jobs as Ray tasks: on a new local Ray instance, or on the cluster at ``address``.

    Run directories must be on storage every node can write (a shared file system).
    """
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray backend needs the optional extra: pip install 'sparsedyn[ray]'") from None
    jobs = list(jobs)
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(execute_point)
        pending = [remote.remote(cfg, rd) for cfg, rd in jobs]
        out = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            out.append(ray.get(done[0]))
            if on_done:
                on_done(out[-1])
        return out
    finally:
        if started_here:
            ray.shutdown()
