"""A run killed at an arbitrary moment resumes from its last checkpoint to the same numbers."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

CONFIG = """
name: killme
seed: 4
task: {system: sparse_tanh, system_params: {n: 4, parents: 1}, n_train: 16, n_val: 4, n_test: 4,
       t_end: 2.0, n_points: 11}
model: {hidden: [16], solver: rk4, step_size: 0.1}
methods: [{name: pathreg, lambda_paths: 0.001}]
trainer: {epochs: 40, batch_size: 4, eval_every: 5, progress: false}
"""


def _cli(*args):
    return [sys.executable, "-m", "sparsedyn.cli", *args]


def _epochs_done(run_dir):
    try:
        with open(run_dir / "metrics.csv") as f:
            return len(list(csv.DictReader(f)))
    except FileNotFoundError:
        return 0


def test_kill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli("run", str(cfg), "--out", str(tmp_path / "full")), check=True, env=env,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("run", str(cfg), "--out", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _epochs_done(killed) < 12 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    done_before = _epochs_done(killed)
    assert 12 <= done_before < 50  # 40 sparsification + 10 fine-tuning epochs
    subprocess.run(_cli("run", str(cfg), "--out", str(killed), "--resume"), check=True, env=env,
                   capture_output=True)
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert _epochs_done(killed) == 50
