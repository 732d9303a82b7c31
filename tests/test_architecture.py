"""The house rules, checked on the source: no import cycles, a runner that names no task, a report
that reads run directories only, and every registered task listed and exported."""

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sparsedyn
from sparsedyn.cli import app
from sparsedyn.methods import METHODS
from sparsedyn.tasks import TASKS

PKG = Path(sparsedyn.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PKG.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports (at any depth: lazy imports count too)."""
    me = _module(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            candidates = [f"{target}.{a.name}" for a in node.names] + ([target] if node.module else [])
            out |= {n for n in candidates if _is_module(n)}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("sparsedyn")}
    # a module's parent packages are initialised before it whatever it imports: not an edge
    ancestors = {".".join(me[:i]) for i in range(1, len(me) + 1)}
    return out - ancestors


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PKG.rglob("*.py")}


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_module_imports_itself_through_others():
    graph = _graph()
    cycles = [m for m in graph if m in _reachable(graph, m)]
    assert not cycles, cycles


def test_the_runner_names_no_task():
    text = (PKG / "runner.py").read_text()
    for name in TASKS:
        assert f'"{name}"' not in text and f"'{name}'" not in text, name


def test_the_report_imports_neither_the_runner_nor_the_tasks():
    graph = _graph()
    for module in ("sparsedyn.report", "sparsedyn.report_plots", "sparsedyn.report_html", "sparsedyn.run_records",
                   "sparsedyn.report_pareto"):
        reached = _reachable(graph, module)
        assert not any(m == "sparsedyn.runner" or m.startswith("sparsedyn.tasks") for m in reached), module


def test_list_and_the_package_export_every_registered_task_and_method():
    out = CliRunner().invoke(app, ["list"]).output
    for name in [*TASKS, *METHODS]:
        assert name in out, name
    for cls in [*TASKS.values(), *METHODS.values()]:
        assert cls.__name__ in sparsedyn.__all__ and getattr(sparsedyn, cls.__name__) is cls
    for name in ("Moduli", "RecurrentLayer", "RNNStack", "PathIntegrationRNN", "RNNLanguageModel"):
        assert name in sparsedyn.__all__, name


def test_every_task_config_builds_through_its_registered_class():
    for name, cls in TASKS.items():
        assert cls.name == name and cls.Config.model_fields["name"].annotation.__args__ == (name,)
        assert cls.model_kinds, name


def test_every_task_is_built_from_its_config_only():
    """One experiment per name: no task overrides the constructor or keeps a ``from_config``, so Python
    keywords and a YAML section validate through the same Config (SystemTask once defaulted to t_end 5.0 /
    50 points in Python against the config's 3.0 / 30)."""
    from sparsedyn.tasks.base import Task

    for name, cls in TASKS.items():
        assert cls.__init__ is Task.__init__, name
        assert not hasattr(cls, "from_config"), name


def test_a_task_built_by_keywords_has_the_config_a_yaml_section_gives():
    from sparsedyn.config import parse_config
    from sparsedyn.tasks import SystemTask

    task = SystemTask(system="lotka_volterra", n_train=3, n_val=2, n_test=2)
    assert task.config == parse_config({"task": {"system": "lotka_volterra", "n_train": 3, "n_val": 2,
                                                 "n_test": 2}}).task
    assert task.splits["train"].y.shape[:2] == (3, 30)  # the config's default n_points
    with pytest.raises(ValueError, match="n_points"):
        SystemTask(system="lotka_volterra", n_points=1)
    with pytest.raises(TypeError, match="not both"):
        SystemTask(task.config, n_train=4)


def test_every_method_declares_its_strength_and_stackable_numbers_among_its_parameters():
    """Paths, relative strengths and stacked sweeps read these declarations; a method that declared a
    name its constructor does not take would make them fail far from the cause."""
    from sparsedyn.methods.registry import parameters_of

    for name, cls in METHODS.items():
        params = parameters_of(name)
        assert cls.strength in params, (name, cls.strength)
        assert cls.strength in cls.stackable_params and set(cls.stackable_params) <= set(params), name


def test_a_runs_record_is_exactly_its_results_file_and_the_model_travels_beside_it(tmp_path):
    """The runner returns a typed outcome (record + experiment), never a live object inside the record."""
    import json

    from sparsedyn.config import parse_config
    from sparsedyn.runner import Experiment, train_experiment

    cfg = parse_config({"task": {"system": "sparse_tanh", "system_params": {"n": 3}, "n_train": 4, "n_val": 2,
                                 "n_test": 2, "n_points": 5, "t_end": 1.0},
                        "model": {"hidden": [4], "solver": "euler", "step_size": 0.5},
                        "trainer": {"epochs": 1, "finetune_epochs": 0, "batch_size": 4, "progress": False}})
    outcome = train_experiment(cfg, tmp_path / "r")
    assert isinstance(outcome.experiment, Experiment)
    written = json.loads((tmp_path / "r" / "results.json").read_text())
    assert json.dumps(outcome.record, sort_keys=True) == json.dumps(written, sort_keys=True)  # NaN-safe equality


def test_capabilities_are_declared_not_probed():
    """The runner, the trainers, the strength calibration and the continuous-depth code ask declared
    contracts (Method.strength, Task defaults, ContinuousDepth, LayerChain), never getattr/hasattr probes."""
    files = ["runner.py", "train.py", "train_stacked.py", "methods/strength.py", "methods/gated.py",
             "methods/l0.py", "methods/pathreg.py", "methods/lassonet.py", "nn/ode.py"]
    for rel in files:
        tree = ast.parse((PKG / rel).read_text())
        probes = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id in ("getattr", "hasattr", "setattr")]
        assert not probes, (rel, probes)
