"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or a crash) never sees a half-written result or checkpoint. The file gets the permissions
any other new file would (``0666`` less the umask), not ``mkstemp``'s owner-only ``0600``.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)

    def write(f):
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        f.write(buf.getvalue().encode())

    _atomic(path, write)


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` atomically, every tensor that is a view into a larger storage written as a tensor of
    its own (``torch.save`` writes a view's whole storage: a lockstep member's checkpoint would otherwise carry
    every member's weights, :mod:`sparsedyn.flat_adam`)."""
    _atomic(path, lambda f: torch.save(_own_storage(obj), f))


def is_storage_view(t: torch.Tensor) -> bool:
    """Whether ``t`` is a part of a larger storage (a view into a lockstep's flat buffers, say)."""
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()


def _own_storage(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone() if is_storage_view(obj) else obj
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((k, _own_storage(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module state_dict's versions, which load_state_dict reads
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_own_storage(v) for v in obj)
    return obj


def save_numpy(path: Path, array) -> None:
    import numpy as np

    _atomic(path, lambda f: np.save(f, array))


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    import numpy as np

    _atomic(path, lambda f: np.savez(f, **arrays))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")
