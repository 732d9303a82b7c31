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

import contextlib
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
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
        self.counts: dict[str, int] | None = None  # the sweep's status counts, set where it is caught


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


_STOP_EVENT: Any = None  # in a pool worker: the parent's "stop after the current epoch" event


def _init_worker(parent: int, stop: Any, pids: Any) -> None:
    """Start of a pool worker: Ctrl-C is the parent's to handle (its first one sets ``stop``, which asks
    the running point to checkpoint and stop); the worker dies with its parent and tells its pid (so a
    second Ctrl-C can kill it at once)."""
    global _STOP_EVENT
    from .train import request_stop

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    _die_with_parent(parent)
    _STOP_EVENT = stop
    pids.put(os.getpid())

    def relay() -> None:
        stop.wait()
        request_stop()

    threading.Thread(target=relay, daemon=True).start()


def _run_group(group: Group) -> list[Summary]:
    """A pool worker's job: the group's points, unless a stop came first (then none is started)."""
    from .train import stop_requested

    if stop_requested() or (_STOP_EVENT is not None and _STOP_EVENT.is_set()):
        return [{"run_dir": run_dir, "status": "not started"} for _, run_dir, _ in group]
    return execute_group(group)


def _kill_workers(pids: Any) -> None:
    while True:
        try:
            pid = pids.get_nowait()
        except queue.Empty:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_local(jobs: Iterable[Group], workers: int | None = None,
              on_done: Callable[[Summary], None] | None = None) -> list[Summary]:
    """Run groups of jobs ``(config, run_dir, overwrite)`` on ``workers`` processes (default: CPU count);
    ``on_done`` hears of every point. At most ``workers`` groups are dispatched at a time, so a stop
    leaves the rest undispatched. A worker killed from outside breaks the pool: the groups it was
    running alongside are reported failed (they resume from their checkpoints) and a new pool runs the rest."""
    from tqdm.auto import tqdm

    pending = list(jobs)
    n = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    ctx = get_context("spawn")
    stop, pids = ctx.Event(), ctx.Queue()
    out: list[Summary] = []
    interrupts = 0

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), stop, pids))

    def on_sigint(*_: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        tqdm.write("sparsedyn: stopping: no new points; running points checkpoint after their current epoch "
                   "(Ctrl-C again to stop at once)", file=sys.stderr)
        stop.set()

    def finish(summaries: list[Summary]) -> None:
        for summary in summaries:
            out.append(summary)
            if on_done:
                on_done(summary)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    pool, hard = new_pool(), False
    running: dict[Future, tuple[Group, ProcessPoolExecutor]] = {}  # future -> its group and the pool running it
    try:
        while pending or running:
            while pending and len(running) < n and not interrupts:
                group = pending.pop(0)
                running[pool.submit(_run_group, group)] = (group, pool)
            if not running:
                break
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                group, its_pool = running.pop(future)
                try:
                    finish(future.result())
                except BrokenProcessPool as e:  # a worker died: this pool takes no more work
                    finish([{"run_dir": run_dir, "status": "failed", "error": f"a worker process died ({e})"}
                            for _, run_dir, _ in group])
                    if its_pool is pool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool()
    except KeyboardInterrupt:
        hard = True
        _kill_workers(pids)
        in_flight = sum(len(group) for group, _ in running.values())
        raise SweepInterrupted(out, sum(map(len, pending)) + in_flight, hard=True) from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        pool.shutdown(wait=not hard, cancel_futures=True)
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
