"""A run directory's identity and ownership: a config fingerprint, one writer at a time, clean starts.

Every run directory records the fingerprint of the config that produced it (``run.json``).
Writing a different config into it is refused unless ``overwrite`` is asked for, so a
finished run is never silently replaced and ``--resume`` never continues another
experiment's checkpoint. An advisory lock (``flock`` on ``.lock``) stops two processes from
writing one directory at once; the kernel drops it when its holder dies, even by ``kill -9``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from . import io

# Files a run writes; a fresh start or an overwrite removes them first, so nothing stale survives.
RUN_FILES = ("run.json", "config.yaml", "results.json", "error.json", "last.pt", "best.pt", "model.pt",
             "sparsified.pt", "metrics.csv", "dependency.pt", "truth.npy", "forecasts.npz", "features.json",
             "scaling.json")
# Settings that change how a run is shown, never its numbers.
COSMETIC = (("name",), ("trainer", "progress"))


class RunDirError(RuntimeError):
    """The run directory belongs to another config, or another process is writing it."""


def fingerprint(config: dict[str, Any]) -> str:
    """A short hash of everything in ``config`` that can change a run's numbers."""
    cfg = copy.deepcopy(config)
    for path in COSMETIC:
        node = cfg
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_fingerprint(run_dir: Path) -> str | None:
    """The fingerprint a run directory recorded, or None if it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def has_outputs(run_dir: Path) -> bool:
    return any((Path(run_dir) / f).exists() for f in ("results.json", "last.pt", "best.pt"))


def clear(run_dir: Path) -> None:
    """Remove every file a run writes (never anything else)."""
    for name in RUN_FILES:
        (Path(run_dir) / name).unlink(missing_ok=True)


class RunDirectory:
    """Own ``path`` for one run: lock it, check the fingerprint, start clean unless resuming.

    >>> with RunDirectory(out, fingerprint(cfg), resume=False, overwrite=False, info={"threads": 1}):
    ...     train()
    """

    def __init__(self, path: str | Path, fp: str, resume: bool = False, overwrite: bool = False,
                 info: dict[str, Any] | None = None) -> None:
        self.path, self.fp, self.resume, self.overwrite = Path(path), fp, resume, overwrite
        self.info = info or {}
        self._lock_file: IO[str] | None = None

    def __enter__(self) -> RunDirectory:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._check()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        import fcntl

        f = open(self.path / ".lock", "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunDirError(f"{self.path}: another run ({holder}) is writing to this directory; "
                              "wait for it or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._lock_file = f

    def _unlock(self) -> None:
        if self._lock_file is not None:
            import fcntl

            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _check(self) -> None:
        recorded = recorded_fingerprint(self.path)
        if recorded is None and (self.path / "config.yaml").exists():
            recorded = _fingerprint_of_config_file(self.path / "config.yaml")
        foreign = recorded != self.fp if recorded is not None else has_outputs(self.path)
        if foreign and not self.overwrite:
            what = f"config fingerprint {recorded}" if recorded else "no recorded config"
            raise RunDirError(f"{self.path}: holds a run of another config ({what}; this config is {self.fp}); "
                              "choose another --out, or pass --overwrite to replace it")
        if foreign or not self.resume:
            clear(self.path)  # an interrupted fresh start must not leave an old results.json behind
        io.write_json(self.path / "run.json", {"fingerprint": self.fp, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                               **self.info})


def _fingerprint_of_config_file(path: Path) -> str | None:
    """Fingerprint of a ``config.yaml`` written before run directories recorded one."""
    import yaml

    try:
        return fingerprint(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError):
        return None
