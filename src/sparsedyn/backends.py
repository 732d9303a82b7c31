"""Where sweep points run: a local pool of worker processes (default) or Ray (local or a cluster).

Both call the same :func:`execute_point`, and a run sets its own torch thread count from its
config, so a point gives the same numbers whichever backend runs it (or ``sparsedyn run``).

The local pool stops the way a user expects: the first Ctrl-C stops dispatching and asks the
running points to stop after their current epoch (they checkpoint and exit; the sweep then
raises :class:`SweepInterrupted` saying what is done); a second Ctrl-C kills the workers at
once. Workers ignore Ctrl-C themselves (the parent decides what it means) and exit when their
parent dies, even by ``kill -9``.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from . import io

Summary = dict[str, Any]
Job = tuple[dict[str, Any], str, bool]  # (config, run directory, overwrite a changed config)
Group = list[Job]  # points trained as one job: one point, or several stacked (sparsedyn.runner.run_stacked)


class SweepInterrupted(Exception):
    """The user stopped a sweep; ``summaries`` are the points that finished or checkpointed."""

    def __init__(self, summaries: list[Summary], not_started: int, hard: bool) -> None:
        super().__init__("sweep interrupted")
        self.summaries, self.not_started, self.hard = summaries, not_started, hard


def execute_point(config: dict[str, Any], run_dir: str, overwrite: bool = False) -> Summary:
    """Run (or resume) one point; never raises: a failure is written to ``error.json``."""
    from .config import parse_config
    from .runner import run_experiment

    run_dir_p = Path(run_dir)
    try:
        resume = (run_dir_p / "last.pt").exists() and not overwrite
        res = run_experiment(parse_config(config), run_dir_p, resume=resume, overwrite=overwrite)
        (run_dir_p / "error.json").unlink(missing_ok=True)
        return {"run_dir": run_dir, "status": res["status"], "resumed": resume}
    except Exception as e:  # recorded, never propagated: one bad point must not stop a sweep
        from .rundir import RunDirError

        if not isinstance(e, RunDirError):  # another writer's directory: leave its files alone
            io.write_json(run_dir_p / "error.json", {"error": f"{type(e).__name__}: {e}",
                                                     "traceback": traceback.format_exc()})
        return {"run_dir": run_dir, "status": "failed", "error": f"{type(e).__name__}: {e}"}


def execute_group(group: Group) -> list[Summary]:
    """Run (or resume) a group of points: one alone, several as one stacked job. Never raises: a failure
    is written to every member's ``error.json``."""
    if len(group) == 1:
        return [execute_point(*group[0])]
    from .config import parse_config
    from .runner import run_stacked

    dirs = [Path(run_dir) for _, run_dir, _ in group]
    resumes = [(d / "last.pt").exists() and not over for (_, _, over), d in zip(group, dirs)]
    try:
        results = run_stacked([parse_config(c) for c, _, _ in group], dirs, resume=resumes,
                              overwrite=[over for _, _, over in group])
    except Exception as e:  # recorded, never propagated: one bad job must not stop a sweep
        from .rundir import RunDirError

        if not isinstance(e, RunDirError):
            for d in dirs:
                io.write_json(d / "error.json", {"error": f"{type(e).__name__}: {e}", "stacked": len(group),
                                                 "traceback": traceback.format_exc()})
        return [{"run_dir": str(d), "status": "failed", "error": f"{type(e).__name__}: {e}"} for d in dirs]
    for d in dirs:
        (d / "error.json").unlink(missing_ok=True)
    return [{"run_dir": str(d), "status": r["status"], "resumed": res, "stacked": len(group)}
            for d, r, res in zip(dirs, results, resumes)]


# -- local pool ----------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """Exit when the parent process is gone (Linux: at once via prctl; elsewhere: polled)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _worker(tasks, results, parent: int) -> None:
    from .train import request_stop, stop_requested

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    signal.signal(signal.SIGUSR1, lambda *_: request_stop())
    _die_with_parent(parent)
    while True:
        group = tasks.get()
        if group is None:
            return
        run_dirs = [run_dir for _, run_dir, _ in group]
        if stop_requested():
            results.put(("done", os.getpid(), [{"run_dir": d, "status": "not started"} for d in run_dirs]))
            continue
        results.put(("started", os.getpid(), run_dirs))
        results.put(("done", os.getpid(), execute_group(group)))


def run_local(jobs: Iterable[Group], workers: int | None = None,
              on_done: Callable[[Summary], None] | None = None) -> list[Summary]:
    """Run groups of jobs ``(config, run_dir, overwrite)`` on ``workers`` processes (default: CPU count);
    ``on_done`` hears of every point."""
    from tqdm.auto import tqdm

    pending = list(jobs)
    n = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    ctx = get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()

    def start():
        p = ctx.Process(target=_worker, args=(tasks, results, os.getpid()), daemon=True)
        p.start()
        return p

    procs = [start() for _ in range(n)]
    running: dict[int, list[str]] = {}  # worker pid -> its group's run directories
    out: list[Summary] = []
    in_flight, members_in_flight, interrupts = 0, 0, 0

    def on_sigint(*_):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        tqdm.write("sparsedyn: stopping: no new points; running points checkpoint after their current epoch "
                   "(Ctrl-C again to stop at once)", file=sys.stderr)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGUSR1)

    def finish(summary: Summary) -> None:
        out.append(summary)
        if on_done:
            on_done(summary)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        while pending or in_flight:
            while pending and in_flight < n and not interrupts:
                group = pending.pop(0)
                tasks.put(group)
                in_flight += 1
                members_in_flight += len(group)
            if in_flight == 0:
                break
            try:
                kind, pid, payload = results.get(timeout=0.2)
            except queue.Empty:
                for i, p in enumerate(procs):  # a worker killed from outside: its point failed
                    if not p.is_alive():
                        if p.pid in running:
                            in_flight -= 1
                            members_in_flight -= len(running[p.pid])
                            for run_dir in running.pop(p.pid):
                                finish({"run_dir": run_dir, "status": "failed",
                                        "error": f"worker process died (exit code {p.exitcode})"})
                        procs[i] = start()
                continue
            if kind == "started":
                running[pid] = payload
            else:
                running.pop(pid, None)
                in_flight -= 1
                members_in_flight -= len(payload)
                for summary in payload:
                    finish(summary)
    except KeyboardInterrupt:
        for p in procs:
            p.kill()
        raise SweepInterrupted(out, sum(map(len, pending)) + members_in_flight, hard=True) from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    if interrupts:
        raise SweepInterrupted(out, sum(map(len, pending)), hard=False)
    return out


# -- Ray -----------------------------------------------------------------------------------

def run_ray(jobs: Iterable[Group], address: str | None = None, workers: int | None = None,
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
    out: list[Summary] = []
    pending: list[Any] = []
    sizes: dict[Any, int] = {}
    try:
        remote = ray.remote(num_cpus=1)(execute_group)
        for group in jobs:
            ref = remote.remote(group)
            pending.append(ref)
            sizes[ref] = len(group)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for summary in ray.get(done[0]):
                out.append(summary)
                if on_done:
                    on_done(summary)
        return out
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise SweepInterrupted(out, sum(sizes.get(ref, 1) for ref in pending), hard=True) from None
    finally:
        if started_here:
            ray.shutdown()
