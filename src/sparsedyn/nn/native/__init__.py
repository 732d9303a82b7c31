"""The native rk4 kernel: ``fused_rk4.c`` compiled on first use with the system's C compiler, cached.

Why: a small NODE's training step in PyTorch is bound by the ~2,000 small operations of its solve
(``docs/benchmarks.md``); the same solve as one C call per direction does the arithmetic alone. The source is
plain C with no PyTorch headers, so it compiles in about 1.5 s (float and double); it is built once per machine and
source (the cache key hashes the source, the flags, the compiler's version and the CPU) into
``$SPARSEDYN_CACHE_DIR`` (default ``~/.cache/sparsedyn``), written atomically, and loaded with :mod:`ctypes`.

Without a working compiler, or with ``SPARSEDYN_NATIVE=0`` in the environment, :func:`kernel` returns None and
the solve stays on its PyTorch path (a warning says why, once). The two paths agree to float rounding, not bit
for bit, so whether a run used the kernel is part of the run (:func:`status`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).with_name("fused_rk4.c")
FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
"""Compiler flags. ``-ffp-contract=off``: every fused multiply-add in the kernel is an explicit ``fma``, so an
element's bits do not depend on how the compiler vectorised the loop around it. ``-march=native`` is added
when the compiler accepts it."""

_ENV_SWITCH = "SPARSEDYN_NATIVE"


class NativeBuildWarning(RuntimeWarning):
    """The native kernel could not be built or loaded; the PyTorch path is used instead."""


def enabled() -> bool:
    """Whether the native kernel may be used at all (``SPARSEDYN_NATIVE`` not set to 0/false/no/off)."""
    return os.environ.get(_ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _cache_dir() -> Path:
    root = os.environ.get("SPARSEDYN_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparsedyn"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (Linux), or the platform's processor string: a build with
    ``-march=native`` must not be loaded on another CPU sharing the cache."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _compile(cc: str, out: Path, native_arch: bool) -> None:
    """Build the float and double kernels into one shared library at ``out`` (written atomically)."""
    arch = ("-march=native",) if native_arch else ()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        objects = []
        for name, define in (("f32", ()), ("f64", ("-DUSE_DOUBLE",))):
            obj = os.path.join(tmp, f"{name}.o")
            subprocess.run([cc, *FLAGS[:-1], *arch, *define, "-c", str(SOURCE), "-o", obj],
                           check=True, capture_output=True, text=True, timeout=120)
            objects.append(obj)
        lib = os.path.join(tmp, out.name)
        subprocess.run([cc, "-shared", *objects, "-o", lib, "-lm"], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(lib, out)


def _build() -> Path:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(FLAGS), version, platform.machine(),
                                    _cpu_signature()]).encode()).hexdigest()[:16]
    cache = _cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.gettempdir()) / "sparsedyn-cache"
        cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"fused_rk4-{key}{'.dll' if os.name == 'nt' else '.so'}"
    if out.exists():
        return out
    try:
        _compile(cc, out, native_arch=True)
    except subprocess.CalledProcessError:
        _compile(cc, out, native_arch=False)  # a compiler without -march=native
    return out


def _declare(lib: ctypes.CDLL) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"rk4_forward_{suffix}")
        fwd.argtypes = [i, i, i, p, p, p, p, p, p, i, i, p, p, p, p, p]
        fwd.restype = i
        bwd = getattr(lib, f"rk4_backward_{suffix}")
        bwd.argtypes = [i, i, i, p, p, p, p, p, p, i, i, p, p, p, p, p, p, p, p, p]
        bwd.restype = i
        tanh = getattr(lib, f"tanh_{suffix}")
        tanh.argtypes = [ctypes.c_long, p, p]
        tanh.restype = None


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    try:
        lib = ctypes.CDLL(str(_build()))
        _declare(lib)
        return lib, "built"
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as e:
        detail = getattr(e, "stderr", "") or ""
        reason = f"{type(e).__name__}: {e}" + (f"\n{detail.strip()[-2000:]}" if detail else "")
        warnings.warn(f"sparsedyn: the native rk4 kernel could not be built or loaded, so fixed-grid rk4 solves of "
                      f"tanh MLP fields use the (slower) PyTorch path. Reason: {reason}", NativeBuildWarning,
                      stacklevel=3)
        return None, reason


def kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first use; None when disabled or not buildable."""
    if not enabled():
        return None
    return _load()[0]


def status() -> str:
    """One line for a run's metadata: ``"native"``, ``"disabled"`` or ``"unavailable: <reason>"``."""
    if not enabled():
        return "disabled"
    lib, reason = _load()
    return "native" if lib is not None else f"unavailable: {reason.splitlines()[0]}"
