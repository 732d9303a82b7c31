"""Sweeps: a base experiment x a grid (any config field, by dotted path) x variants x seeds.

A sweep file::

    name: systems
    base: {...}                      # an experiment config (or ``base_file: configs/x.yaml``)
    seeds: [0, 1, 2]
    grid:                            # shared axes; a mapping gives labelled values
      task: {lv: {system: lotka_volterra, ...}, tanh: {system: sparse_tanh, ...}}
    variants:                        # named method families, each with its own axes
      vanilla: {set: {methods: []}}
      l1: {set: {methods: [{name: l1}]}, grid: {methods.0.lam: [1.0e-4, 1.0e-3]}}

A lottery-ticket variant names its source run as ``lottery: {from_run: "{runs}/<variant>/seed{seed}"}``
(``{runs}`` is this sweep's runs directory); such points run after all the others.

Each point (variant x axes values x seed) gets its own run directory
``<runs>/<variant>/<axis=label>.../seed<k>``. A point whose ``results.json`` exists is
complete and skipped; one with only a checkpoint is resumed; a failed point writes
``error.json`` and is retried on the next sweep.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, ExperimentConfig, parse_config, read_yaml


@dataclass
class Point:
    """One run of a sweep."""

    variant: str
    labels: dict[str, str]  # axis -> value label
    seed: int
    config: dict[str, Any]
    run_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.run_dir)

    def status(self) -> str:
        """``complete``, ``failed``, ``interrupted`` (a checkpoint, no results) or ``new``."""
        if (self.run_dir / "results.json").exists():
            return "complete"
        if (self.run_dir / "error.json").exists():
            return "failed"
        if (self.run_dir / "last.pt").exists():
            return "interrupted"
        return "new"


def set_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``cfg[a][b][0][c] = value`` for ``dotted = "a.b.0.c"``; dict values merge into dicts."""
    parts = dotted.split(".")
    node: Any = cfg
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    key: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    current = node[key] if isinstance(node, list) else node.get(key)
    node[key] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) \
        else copy.deepcopy(value)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _label(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_")[:60] or "x"


def _axis(values: Any, where: str) -> list[tuple[str, Any]]:
    if isinstance(values, dict):
        return [(str(k), v) for k, v in values.items()]
    if isinstance(values, list) and values:
        return [(_label(v), v) for v in values]
    raise ConfigError(f"{where}: an axis is a non-empty list or a mapping label -> value, got {values!r}")


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    seeds: list[int]
    grid: dict[str, list[tuple[str, Any]]]
    variants: dict[str, tuple[dict[str, Any], dict[str, list[tuple[str, Any]]]]]
    select: dict[str, Any]

    def points(self, runs_dir: str | Path) -> list[Point]:
        """Every point, validated (a bad point raises :class:`ConfigError` naming it)."""
        runs_dir = Path(runs_dir)
        out = []
        for vname, (overrides, vgrid) in self.variants.items():
            axes = {**self.grid, **vgrid}
            names = list(axes)
            for combo in itertools.product(*(axes[a] for a in names)):
                cfg = copy.deepcopy(self.base)
                for path, value in overrides.items():
                    set_path(cfg, path, value)
                labels = {}
                for axis, (label, value) in zip(names, combo):
                    set_path(cfg, axis, value)
                    labels[axis] = label
                sub = Path(vname, *[f"{a}={lab}" for a, lab in labels.items()])
                for seed in self.seeds:
                    c = copy.deepcopy(cfg)
                    c["seed"] = seed
                    c["name"] = f"{self.name}/{sub.as_posix()}"
                    if isinstance(c.get("lottery"), dict) and "from_run" in c["lottery"]:
                        c["lottery"]["from_run"] = c["lottery"]["from_run"].replace("{runs}", str(runs_dir))
                    try:
                        parse_config(c)
                    except ConfigError as e:
                        raise ConfigError(f"sweep point {sub.as_posix()} seed {seed}: {e}") from None
                    out.append(Point(vname, labels, seed, c, runs_dir / sub / f"seed{seed}"))
        return out


def parse_sweep(data: dict[str, Any], root: Path | None = None) -> SweepSpec:
    """Validate a sweep mapping (``root`` resolves a relative ``base_file``)."""
    if not isinstance(data, dict):
        raise ConfigError("a sweep file is a mapping at the top level")
    unknown = set(data) - {"name", "base", "base_file", "seeds", "grid", "variants", "select"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: not a sweep field (name, base, base_file, seeds, grid, "
                          "variants, select)")
    if "base_file" in data:
        path = Path(data["base_file"])
        path = path if path.is_absolute() or root is None else root / path
        if not path.exists():
            raise ConfigError(f"base_file: not found: {path}")
        base = _merge(read_yaml(path) or {}, data.get("base") or {})  # base overrides the file
    else:
        base = data.get("base") or {}
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"seeds: a non-empty list of integers >= 0, got {seeds!r}")
    grid = {k: _axis(v, f"grid.{k}") for k, v in (data.get("grid") or {}).items()}
    variants = {}
    for vname, v in (data.get("variants") or {"default": {}}).items():
        v = v or {}
        bad = set(v) - {"set", "grid"}
        if bad:
            raise ConfigError(f"variants.{vname}.{sorted(bad)[0]}: a variant has only 'set' and 'grid'")
        variants[str(vname)] = (dict(v.get("set") or {}),
                                {k: _axis(a, f"variants.{vname}.grid.{k}") for k, a in (v.get("grid") or {}).items()})
    return SweepSpec(str(data.get("name", "sweep")), base, seeds, grid, variants, dict(data.get("select") or {}))


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep file."""
    return parse_sweep(read_yaml(path, "sweep"), root=Path(path).parent)


def point_config(point: Point) -> ExperimentConfig:
    return parse_config(point.config)
