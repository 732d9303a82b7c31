"""Issue 12 probes on sweeps: exit codes that tell, Ctrl-C that stops, workers that die with their
parent, and sweep files whose changes are not silently ignored."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sparsedyn.report import build_report
from sparsedyn.sweep import parse_sweep, run_sweep

BASE = {
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2,
             "n_test": 2, "t_end": 1.0, "n_points": 5},
    "model": {"hidden": [4], "solver": "rk4", "step_size": 0.25},
    "trainer": {"epochs": 3, "progress": False},
}
# Long enough to be interrupted: ~20 ms an epoch, 3,000 epochs a point.
SLOW = {**BASE, "trainer": {"epochs": 3000, "eval_every": 50, "progress": False}}


def _cli(*args):
    return [sys.executable, "-m", "sparsedyn.cli", *args]


def _write_sweep(path: Path, base: dict, seeds=(0, 1, 2, 3), **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": "s", "base": base, "seeds": list(seeds), **extra}))
    return path


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _started(runs: Path, n: int):
    return lambda: len(list(runs.rglob("best.pt"))) >= n  # written at epoch 0: training has begun


def test_a_sweep_whose_points_all_fail_exits_non_zero_and_says_how_many(tmp_path):
    # probe: 168 points failing on missing data exited 0
    sweep = _write_sweep(tmp_path / "s.yaml", {"task": {"name": "mocap", "data_dir": "no_such_dir"},
                                                "trainer": {"epochs": 1, "progress": False}}, seeds=[0, 1])
    proc = subprocess.run(_cli("sweep", str(sweep), "--out", str(tmp_path / "runs"), "--workers", "1"),
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "2 of 2 points failed" in proc.stderr
    assert (tmp_path / "no_such_dir").as_posix() in json.loads(
        (tmp_path / "runs" / "default" / "seed0" / "error.json").read_text())["error"]


def test_a_diverged_point_counts_as_failed_or_diverged_in_the_report(tmp_path):
    base = {**BASE, "trainer": {"epochs": 6, "eval_every": 6, "lr": 1e6, "progress": False}}
    spec = parse_sweep({"name": "s", "base": base, "seeds": [0], "variants": {"vanilla": {}}})
    counts = run_sweep(spec, tmp_path, workers=1, progress=False)
    assert counts["diverged"] == 1
    md = (build_report(tmp_path, by=None)["out"] / "report.md").read_text()
    assert "(1 failed or diverged)" in md and "exceeds" in md  # the reason is shown


def test_first_ctrl_c_stops_dispatching_checkpoints_running_points_and_says_how_to_resume(tmp_path):
    sweep = _write_sweep(tmp_path / "s.yaml", SLOW)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_cli("sweep", str(sweep), "--out", str(runs), "--workers", "2", "--stack", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert _wait_for(_started(runs, 2), 120), "no point started"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("one Ctrl-C did not stop the sweep within 60 s") from None
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in err and "not started: 2" in err
    assert len(list(runs.rglob("last.pt"))) == 2 and not list(runs.rglob("results.json"))
    assert not list(runs.rglob("error.json"))  # an interrupted point is not a failure


def test_second_ctrl_c_stops_at_once(tmp_path):
    # epochs of several seconds: after one Ctrl-C the points would still be running for a while (the PyTorch
    # solve: the native kernel finishes such an epoch before the second Ctrl-C arrives)
    long_epochs = {**SLOW, "model": {**SLOW["model"], "step_size": 2e-4, "native_solve": False}}
    sweep = _write_sweep(tmp_path / "s.yaml", long_epochs)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_cli("sweep", str(sweep), "--out", str(runs), "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert _wait_for(_started(runs, 2), 120), "no point started"  # best.pt of epoch 0
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    start = time.time()
    _, err = proc.communicate(timeout=30)
    assert time.time() - start < 15 and proc.returncode == 130, err
    assert "Ctrl-C again to stop at once" in err and "stopped at once" in err
    assert _wait_for(lambda: not any(_alive(p) for p in workers), 10), "workers outlived the sweep"


def test_workers_die_with_their_parent_after_kill_9(tmp_path):
    sweep = _write_sweep(tmp_path / "s.yaml", SLOW)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_cli("sweep", str(sweep), "--out", str(runs), "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert _wait_for(_started(runs, 2), 120), "no point started"
    workers = [p for p in _children(proc.pid) if _alive(p)]
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        assert _wait_for(lambda: not any(_alive(p) for p in workers), 10), "orphaned workers still running"
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_an_interrupted_sweep_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    # the two seeds train as one stacked job: it is interrupted, resumed and compared with an uninterrupted one
    base = {**BASE, "trainer": {"epochs": 400, "eval_every": 100, "progress": False}}
    sweep = _write_sweep(tmp_path / "s.yaml", base, seeds=[0, 1])
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_cli("sweep", str(sweep), "--out", str(runs), "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert _wait_for(_started(runs, 2), 120)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert not list(runs.rglob("results.json")), "the points finished before the interrupt; make them longer"
    subprocess.run(_cli("sweep", str(sweep), "--out", str(runs), "--workers", "2"), check=True,
                   capture_output=True)
    run_sweep(parse_sweep({"name": "s", "base": base, "seeds": [0, 1]}), tmp_path / "ref", workers=2,
              progress=False)
    for seed in (0, 1):
        assert json.loads((runs / "default" / f"seed{seed}" / "run.json").read_text())["stacked"] == 2
        a = json.loads((runs / "default" / f"seed{seed}" / "results.json").read_text())
        b = json.loads((tmp_path / "ref" / "default" / f"seed{seed}" / "results.json").read_text())
        assert a["metrics"] == b["metrics"]


def test_a_changed_sweep_file_re_runs_the_changed_points_only(tmp_path):
    # probe: a changed sweep silently reused (and relabelled) the old results
    spec = parse_sweep({"name": "s", "base": BASE, "seeds": [0],
                        "variants": {"a": {}, "b": {"set": {"trainer.lr": 0.05}}}})
    run_sweep(spec, tmp_path, workers=1, progress=False)
    a_mtime = (tmp_path / "a" / "seed0" / "results.json").stat().st_mtime_ns
    changed = parse_sweep({"name": "s", "base": BASE, "seeds": [0],
                           "variants": {"a": {}, "b": {"set": {"trainer.lr": 0.02}}}})
    assert [p.status() for p in changed.points(tmp_path)] == ["complete", "changed"]
    counts = run_sweep(changed, tmp_path, workers=1, progress=False)
    assert counts["changed"] == 1 and counts["complete_before"] == 1 and counts["completed"] == 1
    assert (tmp_path / "a" / "seed0" / "results.json").stat().st_mtime_ns == a_mtime
    cfg = yaml.safe_load((tmp_path / "b" / "seed0" / "config.yaml").read_text())
    assert cfg["trainer"]["lr"] == 0.02


def test_a_worker_killed_from_outside_fails_its_point_and_the_rest_of_the_sweep_runs(tmp_path):
    """The local pool (concurrent.futures): a worker killed by the OOM killer or a user breaks its pool;
    its point is reported failed with the reason, and a new pool runs the points not yet dispatched."""
    import threading

    from sparsedyn.backends import run_local

    slow, fast = tmp_path / "slow", tmp_path / "fast"

    def kill_the_worker_once_the_slow_point_trains():
        if not _wait_for(lambda: (slow / "best.pt").exists(), 120):
            return
        for pid in _children(os.getpid()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline and _alive(pid):
                os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker_once_the_slow_point_trains, daemon=True)
    killer.start()
    out = run_local([[(SLOW, str(slow), False)], [(BASE, str(fast), False)]], workers=1)
    killer.join(timeout=5)
    status = {Path(s["run_dir"]).name: s for s in out}
    assert status["slow"]["status"] == "failed" and "worker process died" in status["slow"]["error"]
    assert status["fast"]["status"] == "completed"
