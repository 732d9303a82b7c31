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
        res.pop("_experiment", None)
        (run_dir_p / "error.json").unlink(missing_ok=True)
        return {"run_dir": run_dir, "status": res["status"], "resumed": resume}
    except Exception as e:  # recorded, never propagated: one bad point must not stop a sweep
        from .rundir import RunDirError

        if not isinstance(e, RunDirError):  # another writer's directory: leave its files alone
            io.write_json(run_dir_p / "error.json", {"error": f"{type(e).__name__}: {e}",
                                                     "traceback": traceback.format_exc()})
        return {"run_dir": run_dir, "status": "failed", "error": f"{type(e).__name__}: {e}"}


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
        job = tasks.get()
        if job is None:
            return
        config, run_dir, overwrite = job
        if stop_requested():
            results.put(("done", os.getpid(), {"run_dir": run_dir, "status": "not started"}))
            continue
        results.put(("started", os.getpid(), run_dir))
        results.put(("done", os.getpid(), execute_point(config, run_dir, overwrite)))


def run_local(jobs: Iterable[Job], workers: int | None = None,
              on_done: Callable[[Summary], None] | None = None) -> list[Summary]:
    """Run jobs ``(config, run_dir, overwrite)`` on ``workers`` processes (default: CPU count)."""
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
    running: dict[int, str] = {}  # worker pid -> run directory
    out: list[Summary] = []
    in_flight, interrupts = 0, 0

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
                tasks.put(pending.pop(0))
                in_flight += 1
            if in_flight == 0:
                break
            try:
                kind, pid, payload = results.get(timeout=0.2)
            except queue.Empty:
                for i, p in enumerate(procs):  # a worker killed from outside: its point failed
                    if not p.is_alive():
                        if p.pid in running:
                            in_flight -= 1
                            finish({"run_dir": running.pop(p.pid), "status": "failed",
                                    "error": f"worker process died (exit code {p.exitcode})"})
                        procs[i] = start()
                continue
            if kind == "started":
                running[pid] = payload
            else:
                running.pop(pid, None)
                in_flight -= 1
                finish(payload)
    except KeyboardInterrupt:
        for p in procs:
            p.kill()
        raise SweepInterrupted(out, len(pending) + in_flight, hard=True) from None
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
        raise SweepInterrupted(out, len(pending), hard=False)
    return out


# -- Ray -----------------------------------------------------------------------------------

def run_ray(jobs: Iterable[Job], address: str | None = None, workers: int | None = None,
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
    try:
        remote = ray.remote(num_cpus=1)(execute_point)
        pending = [remote.remote(*job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            out.append(ray.get(done[0]))
            if on_done:
                on_done(out[-1])
        return out
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise SweepInterrupted(out, len(pending), hard=True) from None
    finally:
        if started_here:
            ray.shutdown()
