"""The task contract: what the runner, trainer and report may ask of a task, and the task registry.

A task class declares, as class attributes, its ``name`` (the config's ``task.name``), its
``Config`` (a pydantic model, the config's ``task`` section) and the ``model_kinds`` it trains.
Its config is its only constructor input: ``Task(config)`` takes a validated section, ``Task(**fields)``
validates the keywords into one exactly as a config file's section is validated (so the Python and
YAML defaults and bounds are one definition), and :meth:`Task.setup` builds the data from
``self.config``. It builds its models with :meth:`Task.build_model`. ``@register_task`` makes it
known to configs, the runner and ``sparsedyn list``; nothing else names tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..series_scaling import SeriesScaling

IN_MEMORY = "<in memory>"  # a config's data path when the data was handed over as an object


class TaskConfig(BaseModel):
    """Base of every task's config section (unknown fields are errors); each subclass narrows ``name``
    to its task's literal name (the discriminator of the config's ``task`` union)."""

    model_config = ConfigDict(extra="forbid")
    name: str


def PathField(default: Any, keywords: tuple[str, ...] = ()) -> Any:  # noqa: N802 - reads like pydantic's Field
    """A field holding a file or folder path: a relative value is resolved against the config file's
    folder (not the current directory) and recorded absolute; ``keywords`` are values that are not paths."""
    return Field(default, json_schema_extra={"path": True, "keywords": list(keywords)})


ConfigT = TypeVar("ConfigT", bound=TaskConfig)


class Task(Generic[ConfigT]):
    """Base of every task. Subclasses set the class attributes and implement :meth:`setup`, the three
    methods the trainer calls (``train_batches``, ``loss``, ``evaluate``) and :meth:`build_model`."""

    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]]
    model_kinds: ClassVar[tuple[str, ...]]
    monitor: ClassVar[str] = "val_loss"  # the metric of ``evaluate`` that selects the best checkpoint
    acknowledgement: ClassVar[str | None] = None  # printed wherever results on the data are shown
    has_vector_field: ClassVar[bool] = False  # models are continuous-depth: dependencies can be read off
    feature_names: list[str] | None = None  # names of the observed variables, where the data has them
    scaling: SeriesScaling | None = None  # how the data were rescaled before fitting (the trajectories task)

    config: ConfigT

    def __init__(self, config: ConfigT | None = None, /, **fields: Any) -> None:
        """The task for ``config`` (a validated ``Config``) or for ``fields`` (validated into one:
        unknown names and out-of-range values are errors that name the field)."""
        self.config = self.make_config(config, fields)
        self.setup()

    @classmethod
    def make_config(cls, config: ConfigT | None = None, fields: dict[str, Any] | None = None) -> ConfigT:
        """``config`` itself, or the ``Config`` validated from ``fields`` (not both)."""
        if config is None:  # paths may be given as Path objects; the config records strings
            given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in (fields or {}).items()}
            return cls.Config(**{"name": cls.name, **given})  # type: ignore[return-value]
        if fields:
            raise TypeError(f"{cls.__name__} takes a config or keywords, not both (got {sorted(fields)})")
        if not isinstance(config, cls.Config):
            raise TypeError(f"{cls.__name__} takes a {cls.Config.__name__}, got {type(config).__name__}")
        return config

    def setup(self) -> None:
        """Build the task's data and state from ``self.config`` (called once by the constructor)."""
        raise NotImplementedError

    @classmethod
    def _handed_over(cls, data_field: str, data: Any, fields: dict[str, Any]) -> Any:
        """The task on data handed over as an object instead of read from the config's ``data_field``
        (recorded as ``"<in memory>"``); the subclass's ``_build(data)`` does what ``setup`` does after
        loading."""
        task = cls.__new__(cls)
        task.config = cls.make_config(None, {data_field: IN_MEMORY, **fields})
        task._build(data)  # type: ignore[attr-defined]
        return task

    @property
    def truth(self) -> np.ndarray | None:
        """The true dependency graph (out, in), where one is known (default: none)."""
        return None

    def train_batches(self, batch_size: int, generator) -> Any:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError

    def build_model(self, model_cfg: Any) -> nn.Module:
        """The model for the config's ``model`` section (its ``kind`` is one of ``model_kinds``)."""
        raise NotImplementedError

    def analyse(self, model: nn.Module) -> dict[str, float]:
        """Task-specific metrics of a trained model beyond ``evaluate`` (e.g. spurious sparsity)."""
        return {}

    def trivial_baselines(self) -> dict[str, dict[str, float]]:
        """Scores of predictors that learn nothing (persistence, mean, ...), by predictor."""
        return {}

    def can_stack(self, models: Sequence[nn.Module], batches: Sequence[Any]) -> bool:
        """Whether these members' losses on these batches can come from one stacked forward
        (:mod:`sparsedyn.train_stacked`); then :meth:`stacked_loss` computes them. Default: no."""
        return False

    def stacked_loss(self, models: Sequence[nn.Module], batches: Sequence[Any]) -> list[Tensor]:
        """Every member's loss on its batch from one stacked forward (only called when :meth:`can_stack`)."""
        raise NotImplementedError(f"task {self.name!r} has no stacked forward")

    def field_inputs(self, split: str = "train") -> Tensor | None:
        """States at which a continuous-depth model's vector field is read for the Jacobian graph read-out
        (None: the task has none)."""
        return None

    def figure_data(self, model: nn.Module) -> dict[str, np.ndarray] | None:
        """Arrays a report figure draws (e.g. truth and forecast of one test sequence), written with the
        run as ``forecasts.npz`` so the report never rebuilds the experiment."""
        return None


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` the task named ``cls.name``."""
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice ({TASKS[cls.name].__name__}, {cls.__name__})")
    TASKS[cls.name] = cls
    return cls
