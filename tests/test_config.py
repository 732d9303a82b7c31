import pytest

from sparsedyn.config import ConfigError, load_config, parse_config

BAD_VALUES = [
    ("seed", -1), ("name", 3.5j),
    ("task.system", "pendulum"), ("task.n_train", 0), ("task.n_val", -2), ("task.n_test", 0),
    ("task.t_end", 0), ("task.n_points", 1), ("task.noise", -0.1), ("task.irregular", 1.0),
    ("task.extrapolate", 1.0), ("task.data_seed", -3), ("task.name", "nav"),
    ("model.kind", "transformer"), ("model.cell", "lstm2"), ("model.nonlinearity", "gelu"),
    ("model.rnn_bias", "maybe"), ("model.sindy_degree", 0), ("model.sindy_threshold", -1),
    ("model.hidden", [0]), ("model.activation", "swish2"), ("model.solver", "leap"),
    ("model.step_size", -0.1), ("model.rtol", 0), ("model.atol", -1), ("model.velocity_hidden", [-1]),
    ("model.adjoint", "perhaps"),
    ("trainer.epochs", 0), ("trainer.lr", -1e-3), ("trainer.gate_lr", 0), ("trainer.batch_size", 0),
    ("trainer.lr_schedule", "exp"), ("trainer.grad_clip", -1), ("trainer.eval_every", 0),
    ("trainer.divergence_factor", 0.5), ("trainer.progress", "sometimes"),
]


def _set(raw, dotted, value):
    parts = dotted.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return raw


@pytest.mark.parametrize("field,value", BAD_VALUES, ids=[f for f, _ in BAD_VALUES])
def test_every_field_rejects_a_bad_value_naming_it(field, value):
    with pytest.raises(ConfigError) as err:
        parse_config(_set({}, field, value))
    assert field in str(err.value)


@pytest.mark.parametrize("method,field", [
    ({"name": "pathreg", "lambda_paths": -1}, "methods.0.lambda_paths"),
    ({"name": "l1", "lam": -1}, "methods.0.lam"),
    ({"name": "l0", "init_drop": 2}, "methods.0.init_drop"),
    ({"name": "lassonet", "mode": "sideways"}, "methods.0.mode"),
    ({"name": "magnitude", "sparsity": 1.2}, "methods.0.sparsity"),
    ({"name": "group_lasso", "lam": float("nan")}, "methods.0.lam"),
    ({"name": "cnode", "gamma": 1}, "methods.0.gamma"),
    ({"name": "dropout"}, "methods.0.name"),
])
def test_method_fields_are_validated_and_named(method, field):
    with pytest.raises(ConfigError) as err:
        parse_config({"methods": [method]})
    assert field in str(err.value)


NAV_BAD = [("n_place_cells", 2), ("sequence_length", 0), ("steps_per_epoch", 0), ("n_val", 0), ("n_test", -1),
           ("place_cell_sigma", 0), ("surround_scale", 1.0), ("box", -2), ("data_seed", -1)]
ADD_BAD = [("sequence_length", 1), ("steps_per_epoch", 0), ("n_val", 0), ("n_test", 0), ("data_seed", -1)]


@pytest.mark.parametrize("task,field,value", [("navigation", f, v) for f, v in NAV_BAD] +
                         [("adding", f, v) for f, v in ADD_BAD])
def test_rnn_task_fields_reject_bad_values_naming_them(task, field, value):
    with pytest.raises(ConfigError) as err:
        parse_config({"task": {"name": task, field: value}, "model": {"kind": "rnn"}})
    assert f"task.{field}" in str(err.value)


def test_lottery_fields_are_validated():
    with pytest.raises(ConfigError, match="lottery.reinit"):
        parse_config({"lottery": {"from_run": "x", "reinit": "random"}})
    with pytest.raises(ConfigError, match="lottery.from_run"):
        parse_config({"lottery": {}})


def test_unknown_field_and_system_param_are_named():
    with pytest.raises(ConfigError, match="trainer.epoch"):
        parse_config({"trainer": {"epoch": 3}})
    with pytest.raises(ConfigError, match="task.system_params"):
        parse_config({"task": {"system": "lorenz96", "system_params": {"n": 2}}})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)


def test_shipped_configs_are_valid():
    from pathlib import Path

    from sparsedyn.methods import METHODS

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    used = set()
    for f in files:
        used |= {m["name"] for m in load_config(f).methods}
    assert used == set(METHODS)  # every method has a config to start from


@pytest.mark.parametrize("task,field,value", [
    ({"name": "mocap"}, "window", 1), ({"name": "navigation"}, "n_place_cells", 1),
    ({"name": "hematopoiesis"}, "grid_points", 1), ({"name": "krumsiek"}, "stride", 0),
    ({"name": "systems"}, "n_train", 0), ({}, "n_points", 1),
])
def test_task_field_errors_are_named_task_dot_field_for_every_task(task, field, value):
    """The bug: a hard-coded tuple of task tags gave `task.mocap.window` but `task.n_place_cells`."""
    with pytest.raises(ConfigError, match=rf"\n  task\.{field}: "):
        parse_config({"task": {**task, field: value}})


def test_the_trainer_section_and_the_trainer_share_one_set_of_defaults():
    from sparsedyn.config import ExperimentConfig
    from sparsedyn.train import TrainSettings

    assert ExperimentConfig().trainer == TrainSettings()  # one class: the defaults cannot drift apart


def test_shipped_sweeps_validate_and_their_data_folders_resolve_to_the_shared_data():
    """Every point of every shipped sweep validates, and a data folder it names is the real one beside
    the checkout (relative paths resolve against the sweep file: a '../shared' written as if from the
    project root pointed into configs/)."""
    from pathlib import Path

    from conftest import SHARED_DATA
    from sparsedyn.sweep import load_sweep

    sweeps = sorted((Path(__file__).parents[1] / "configs" / "sweeps").glob("*.yaml"))
    assert sweeps
    for f in sweeps:
        points = load_sweep(f).points("/tmp/unused")
        dirs = {p.config["task"].get("data_dir") for p in points} - {None}
        for d in dirs:
            assert Path(d).resolve().parent == SHARED_DATA.resolve(), (f.name, d)
