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

An axis named ``@<name>`` sets several sections per value (``@system: {lv: {task: {...}, trainer:
{epochs: 500}}}``): one axis, not a product of axes; its folders read ``<name>=<label>``.

A variant with ``path: <axis>`` is a regularisation path along one of its numeric grid axes
(increasing values): each point warm-starts from the previous value's ``sparsified.pt`` (see
:mod:`sparsedyn.path`), so the sweep runs the values in order, every path of the sweep side by side.

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

from . import io, rundir
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
        """``complete``, ``changed`` (its directory holds another config's run), ``failed``,
        ``interrupted`` (a checkpoint, no results) or ``new``."""
        recorded = rundir.recorded_fingerprint(self.run_dir)
        if recorded is not None and recorded != rundir.fingerprint(self.config):
            return "changed"
        if (self.run_dir / "results.json").exists():
            return "complete"
        if (self.run_dir / "error.json").exists():
            return "failed"
        if (self.run_dir / "last.pt").exists():
            return "interrupted"
        return "new"


def set_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``cfg[a][b][0][c] = value`` for ``dotted = "a.b.0.c"``; dict values merge into dicts.

    A path that does not fit the config (an index past a list's end, a key below a number) is a
    :class:`ConfigError` naming it.
    """
    parts = dotted.split(".")
    node: Any = cfg
    for i, p in enumerate(parts):
        where = ".".join(parts[:i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"{dotted}: {'.'.join(parts[:i]) or 'the config'} is a list of {len(node)}; "
                                  f"{p!r} is not an index in it")
            key: Any = int(p)
        elif isinstance(node, dict):
            key = p
            if not last and key not in node:
                node[key] = {}
        else:
            raise ConfigError(f"{dotted}: {'.'.join(parts[:i])} is {node!r}, not a mapping or a list, so it has "
                              f"no {where!r}")
        if last:
            current = node[key] if isinstance(node, list) else node.get(key)
            node[key] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) \
                else copy.deepcopy(value)
            return
        node = node[key]


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
    paths: dict[str, str] = field(default_factory=dict)  # variant -> its warm-started path axis
    root: Path = field(default_factory=Path.cwd)  # relative paths in the sweep are relative to this folder

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
                    _set(cfg, path, value, f"variants.{vname}.set")
                labels = {}
                for axis, (label, value) in zip(names, combo):
                    _set(cfg, axis, value, "grid")
                    labels[axis] = label
                sub = Path(vname, *[f"{a.lstrip('@')}={lab}" for a, lab in labels.items()])
                step, previous = self._path_step(vname, labels)
                for seed in self.seeds:
                    c = copy.deepcopy(cfg)
                    c["seed"] = seed
                    if previous is not None:  # absolute: the run records it and resolves nothing
                        c["warm_start"] = str((runs_dir / previous / f"seed{seed}" / "sparsified.pt").resolve())
                    c["name"] = f"{self.name}/{sub.as_posix()}"
                    if isinstance(c.get("lottery"), dict) and "from_run" in c["lottery"]:
                        c["lottery"]["from_run"] = c["lottery"]["from_run"].replace("{runs}", str(runs_dir.resolve()))
                    try:  # the full, validated config with absolute paths: what the run records
                        c = parse_config(c, root=self.root).model_dump()
                    except ConfigError as e:
                        raise ConfigError(f"sweep point {sub.as_posix()} seed {seed}: {e}") from None
                    out.append(Point(vname, labels, seed, c, runs_dir / sub / f"seed{seed}", {"path_step": step}))
        seen: set[Path] = set()
        for point in out:  # two runs in one folder would fight over its lock and both fail
            if point.run_dir in seen:
                folder = point.run_dir.relative_to(runs_dir).as_posix()
                raise ConfigError(f"two sweep points share the folder {folder}: a seed or an axis value is given "
                                  "twice (seeds and each axis's labels must be unique)")
            seen.add(point.run_dir)
        return out

    def _path_step(self, vname: str, labels: dict[str, str]) -> tuple[int, Path | None]:
        """A point's index along its variant's path axis (0 off paths) and the previous point's folder."""
        axis = self.paths.get(vname)
        if axis is None:
            return 0, None
        order = [label for label, _ in self.variants[vname][1][axis]]
        step = order.index(labels[axis])
        if step == 0:
            return 0, None
        prev = {**labels, axis: order[step - 1]}
        return step, Path(vname, *[f"{a.lstrip('@')}={lab}" for a, lab in prev.items()])


def _set(cfg: dict[str, Any], path: str, value: Any, where: str) -> None:
    if path.startswith("@"):  # a named axis whose values set several sections at once
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{path}: the values of an '@' axis are mappings of config sections, "
                              f"got {value!r}")
        for key, v in value.items():
            _set(cfg, key, v, where)
        return
    try:
        set_path(cfg, path, value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


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
        base_data = read_yaml(path) or {}
        base_data = parse_config(base_data, root=path.resolve().parent).model_dump(exclude_unset=True) \
            if isinstance(base_data, dict) and base_data else base_data  # its relative paths: from its folder
        base = _merge(base_data, data.get("base") or {})  # base overrides the file
    else:
        base = data.get("base") or {}
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"seeds: a non-empty list of integers >= 0, got {seeds!r}")
    grid = {k: _axis(v, f"grid.{k}") for k, v in (data.get("grid") or {}).items()}
    variants, paths = {}, {}
    for vname, v in (data.get("variants") or {"default": {}}).items():
        v = v or {}
        bad = set(v) - {"set", "grid", "path"}
        if bad:
            raise ConfigError(f"variants.{vname}.{sorted(bad)[0]}: a variant has only 'set', 'grid' and 'path'")
        variants[str(vname)] = (dict(v.get("set") or {}),
                                {k: _axis(a, f"variants.{vname}.grid.{k}") for k, a in (v.get("grid") or {}).items()})
        if "path" in v:
            paths[str(vname)] = _path_axis(v["path"], variants[str(vname)][1], f"variants.{vname}.path")
    return SweepSpec(str(data.get("name", "sweep")), base, seeds, grid, variants, dict(data.get("select") or {}),
                     paths, root=(root or Path.cwd()).resolve())


def _path_axis(axis: Any, vgrid: dict[str, list[tuple[str, Any]]], where: str) -> str:
    """Check that a variant's ``path`` names one of its own grid axes with increasing numbers >= 0."""
    if axis not in vgrid:
        raise ConfigError(f"{where}: {axis!r} is not an axis of the variant's grid ({', '.join(vgrid) or 'none'})")
    values = [v for _, v in vgrid[axis]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values) \
            or values != sorted(values) or len(set(values)) != len(values):
        raise ConfigError(f"{where}: the path's strengths must be increasing numbers >= 0, got {values}")
    return str(axis)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep file."""
    return parse_sweep(read_yaml(path, "sweep"), root=Path(path).parent)


def point_config(point: Point) -> ExperimentConfig:
    return parse_config(point.config)


def stack_groups(points: list[Point], size: int) -> list[list[Point]]:
    """``points`` in groups of at most ``size`` that can train as one stacked job (equal
    :func:`~sparsedyn.runner.stack_key`), in the order of each group's first point."""
    from .runner import stack_key

    if size < 1:
        raise ValueError(f"stack size must be >= 1, got {size}")
    groups: dict[Any, list[list[Point]]] = {}
    order: list[list[Point]] = []
    for i, p in enumerate(points):
        key = stack_key(p.config) if size > 1 else None
        chunks = groups.setdefault(key if key is not None else ("alone", i), [])
        if not chunks or len(chunks[-1]) >= size:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(p)
    return order


def run_sweep(spec: SweepSpec, runs_dir: str | Path, backend: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True, stack: int = 32) -> dict[str, int]:
    """Run every incomplete point of ``spec``; return status counts.

    Points that differ only in seed and method strengths train as one stacked job of at most
    ``stack`` members (:func:`~sparsedyn.runner.run_stacked`: same files and numbers as alone, up to
    float rounding); ``stack=1`` trains each point on its own.

    Complete points are skipped, interrupted ones resumed, failed ones retried, and points whose
    config changed since their directory was written are re-run from scratch; a point that
    raises is recorded in its ``error.json`` and the others go on. A Ctrl-C raises
    :class:`~sparsedyn.backends.SweepInterrupted` (see :mod:`sparsedyn.backends`).
    """
    from tqdm.auto import tqdm

    from .backends import SweepInterrupted, run_local, run_ray

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    runs_dir = Path(runs_dir)
    points = spec.points(runs_dir)
    statuses = {p.key: p.status() for p in points}
    for p in points:
        labels = {k.lstrip("@"): v for k, v in p.labels.items()}  # as the folders read them; report --by <name>
        io.write_json(p.run_dir / "point.json", {"sweep": spec.name, "variant": p.variant, "labels": labels,
                                                 "seed": p.seed, **({"path": spec.paths[p.variant]}
                                                                    if p.variant in spec.paths else {})})
    io.write_json(runs_dir / "sweep.json", {"name": spec.name, "select": spec.select,
                                            "points": [str(p.run_dir.relative_to(runs_dir)) for p in points]})
    todo = [p for p in points if statuses[p.key] != "complete"]
    counts = {"complete_before": len(points) - len(todo), "changed": sum(s == "changed" for s in statuses.values()),
              "completed": 0, "diverged": 0, "failed": 0, "interrupted": 0, "not started": 0}
    if counts["changed"]:
        tqdm.write(f"sparsedyn: {counts['changed']} point(s) changed config since they ran; re-running them")
    bar = tqdm(total=len(points), initial=counts["complete_before"], desc=f"sweep {spec.name}",
               disable=not progress)

    def done(summary):
        status = summary["status"]
        key = status if status in ("completed", "diverged", "interrupted", "not started") else "failed"
        counts[key] += 1
        if key in ("completed", "diverged", "failed"):
            bar.update(1)
        if key == "failed":
            tqdm.write(f"failed: {summary['run_dir']}: {summary['error']}")

    # A path's k-th point needs its (k-1)-th finished: step k runs in phase k. Lottery-ticket points need
    # their source runs finished: they run in a last phase.
    plain = [p for p in todo if not p.config.get("lottery")]
    steps = max((p.meta.get("path_step", 0) for p in plain), default=0)
    phases = [[p for p in plain if p.meta.get("path_step", 0) == k] for k in range(steps + 1)]
    phases.append([p for p in todo if p.config.get("lottery")])
    try:
        for i, phase in enumerate(phases):
            jobs = [[(p.config, str(p.run_dir), statuses[p.key] == "changed") for p in group]
                    for group in stack_groups(phase, stack)]
            if not jobs:
                continue
            try:
                if backend == "local":
                    run_local(jobs, workers, done)
                else:
                    run_ray(jobs, address, workers, done)
            except SweepInterrupted as e:
                counts["not started"] += e.not_started + sum(len(ph) for ph in phases[i + 1:])
                e.counts = counts
                raise
    finally:
        bar.close()
    return counts
