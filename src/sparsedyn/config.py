"""Typed, validated experiment configuration: YAML in, clear errors out.

Every error names the offending field by its dotted path, e.g.
``trainer.lr: Input should be greater than 0``. Methods are validated by building them,
so a method's own checks (``lam must be >= 0``) are the single source of truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .methods.base import ParamError
from .methods.registry import build_method
from .nn.ode import SOLVERS
from .tasks import TASKS  # every task module registers itself on import
from .tasks.base import PathField
from .tasks.base import TaskConfig as BaseTaskConfig
from .train import TrainSettings


class ConfigError(ValueError):
    """A config file or dict failed validation; the message lists each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def resolve_paths(model: BaseModel, root: Path) -> None:
    """Make every relative :func:`PathField` of ``model`` (and its sub-models) absolute against ``root``."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            resolve_paths(value, root)
            continue
        extra: dict[str, Any] = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not extra.get("path") or not isinstance(value, str) or value in extra.get("keywords", ()):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            setattr(model, name, str((root / path).resolve()))


if TYPE_CHECKING:  # the union is built from the registry at import time; checkers see the common base
    TaskConfig = BaseTaskConfig
else:
    TaskConfig = Annotated[Union[tuple(t.Config for t in TASKS.values())], Field(discriminator="name")]  # noqa: UP007


class LotteryConfig(_Strict):
    """Lottery-ticket control: retrain under the final mask of another run.

    ``reinit``: the weights start from the source run's initialisation (``original``) or another one
    (``fresh``); ``mask``: the source run's final masks (``trained``) or, as the random-ticket control, each
    mask's entries shuffled (same number kept in every masked tensor, positions drawn from this run's seed)."""

    from_run: str = PathField(...)  # run directory; "{seed}" is replaced by this run's seed
    reinit: Literal["original", "fresh"] = "original"
    mask: Literal["trained", "random"] = "trained"


class ModelConfig(_Strict):
    kind: Literal["node", "sonode", "sindy", "rnn"] = "node"
    cell: Literal["elman", "gru", "lstm"] = "elman"  # kind: rnn (hidden = one size per layer)
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    rnn_bias: bool = True
    embedding_size: int | None = Field(None, gt=0)  # language models; default: the first hidden size
    tie_weights: bool = False
    hidden: list[int] = Field(default_factory=lambda: [32, 32], min_length=1)
    activation: Literal["tanh", "relu", "elu", "softplus", "sigmoid", "silu"] = "tanh"
    # NODE/SONODE vector field: "shared" (one MLP for every output) or "per_output" (one network of ``hidden``
    # per output variable, the architecture GroupLasso uses): any method on either, to separate the
    # architecture's effect from the penalty's
    field: Literal["shared", "per_output"] = "shared"
    velocity_hidden: list[int] = Field(default_factory=lambda: [16])
    solver: str = "rk4"
    step_size: float | None = Field(0.1, gt=0)
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-4, gt=0)
    adjoint: bool = False
    fixed_grid_loop: bool = True  # euler/midpoint/rk4: the lean loop (torchdiffeq's numbers); False: odeint
    # rk4 of a tanh MLP field: the fused solve in C (nn.fused_native; built on first use, equal to float rounding);
    # False: the PyTorch fused solve. SPARSEDYN_NATIVE=0 in the environment turns it off everywhere
    native_solve: bool = True
    sindy_degree: int = Field(2, ge=1)  # kind: sindy only (pysindy baseline)
    sindy_threshold: float = Field(0.05, ge=0)

    @field_validator("hidden", "velocity_hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"hidden sizes must be positive, got {v}")
        return v

    @field_validator("solver")
    @classmethod
    def _solver(cls, v: str) -> str:
        if v not in SOLVERS:
            raise ValueError(f"unknown solver {v!r}; choose from {SOLVERS}")
        return v


TrainerConfig = TrainSettings  # one source for every trainer setting and its default


class ExperimentConfig(_Strict):
    """One experiment: task x model x methods x trainer, with a seed."""

    name: str = "experiment"
    seed: int = Field(0, ge=0)
    task: TaskConfig = Field(default_factory=lambda: TASKS["systems"].Config(name="systems"))
    model: ModelConfig = Field(default_factory=ModelConfig)
    methods: list[dict[str, Any]] = Field(default_factory=list)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    lottery: LotteryConfig | None = None
    # Start from the weights another run had at the end of its sparsification epochs (its
    # ``sparsified.pt``): a regularisation path warm-starts each strength from the previous one.
    warm_start: str | None = PathField(None)

    @model_validator(mode="before")
    @classmethod
    def _default_task_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("task"), dict) and "name" not in data["task"]:
            data = {**data, "task": {**data["task"], "name": "systems"}}
        return data



def _method_errors(methods: list[Any]) -> list[str]:
    """Build every method; each error becomes ``methods.<i>.<param>: message`` (``methods.<i>`` if unnamed)."""
    errors = []
    for i, spec in enumerate(methods):
        if not isinstance(spec, dict):
            errors.append(f"methods.{i}: a method is a mapping with a 'name', got {spec!r}")
            continue
        try:
            build_method(spec)
        except ParamError as e:
            msg = str(e).removeprefix(f"{e.param}: ")
            errors.append(f"methods.{i}.{e.param}: {msg}")
        except (ValueError, TypeError) as e:
            errors.append(f"methods.{i}: {e}")
    return errors


def _format(err: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    task = data.get("task")
    tag = task.get("name", "systems") if isinstance(task, dict) else None
    for e in err.errors():
        parts = [str(p) for p in e["loc"]]
        if len(parts) > 1 and parts[0] == "task" and parts[1] == tag:
            parts.pop(1)  # the union's tag is not a field the user wrote
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            parts.append("name")
        loc = ".".join(parts)
        lines.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    return lines


def parse_config(data: dict[str, Any], root: str | Path | None = None) -> ExperimentConfig:
    """Validate a config dict; raise :class:`ConfigError` naming every bad field.

    Relative paths (data folders, a lottery's source run) are resolved against ``root`` (the
    config file's folder; default: the current directory) and kept absolute in the result.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config is a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        errors = _format(e, data) + _method_errors(data.get("methods") or [])
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors)) from None
    errors = _method_errors(cfg.methods)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    resolve_paths(cfg, Path(root) if root is not None else Path.cwd())
    return cfg


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """Parse a YAML file; a missing file or bad YAML is a :class:`ConfigError` naming the path."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML experiment file; an empty file is an error (it would silently train the
    default experiment)."""
    data = read_yaml(path)
    if not data:
        raise ConfigError(f"{path}: the config file is empty; give at least a task, a model or methods "
                          "(see configs/ for examples)")
    return data


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment file (relative paths in it are relative to its folder)."""
    return parse_config(read_config_data(path), root=Path(path).resolve().parent)
