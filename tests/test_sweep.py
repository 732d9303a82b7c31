import json
from pathlib import Path

import pytest

from sparsedyn.config import ConfigError, parse_config
from sparsedyn.runner import run_experiment
from sparsedyn.sweep import parse_sweep, run_sweep, set_path

BASE = {
    "task": {"system": "sparse_tanh", "system_params": {"n": 3, "parents": 1}, "n_train": 4, "n_val": 2,
             "n_test": 2, "t_end": 1.0, "n_points": 5},
    "model": {"hidden": [4], "solver": "rk4", "step_size": 0.25},
    "trainer": {"epochs": 3, "progress": False},
}


def _spec(**extra):
    return parse_sweep({"name": "t", "base": BASE, "seeds": [0, 1], **extra})


def test_points_are_variants_times_axes_times_seeds_with_readable_dirs(tmp_path):
    spec = _spec(grid={"task.noise": [0.0, 0.1]},
                 variants={"vanilla": {"set": {"methods": []}},
                           "l1": {"set": {"methods": [{"name": "l1"}]}, "grid": {"methods.0.lam": [1e-3, 1e-2]}}})
    points = spec.points(tmp_path)
    assert len(points) == (1 + 2) * 2 * 2
    p = next(p for p in points if p.variant == "l1" and p.seed == 1 and p.labels["methods.0.lam"] == "0.01")
    assert p.run_dir == tmp_path / "l1" / "task.noise=0.1" / "methods.0.lam=0.01" / "seed1" or \
        p.run_dir == tmp_path / "l1" / "task.noise=0.0" / "methods.0.lam=0.01" / "seed1"
    assert p.config["methods"][0] == {"name": "l1", "lam": 0.01} and p.config["seed"] == 1


def test_labelled_axis_values_merge_into_the_base():
    spec = _spec(grid={"task": {"big": {"system_params": {"n": 4}}}})
    (p, _) = spec.points("runs")
    assert p.labels == {"task": "big"}
    assert p.config["task"]["system_params"] == {"n": 4, "parents": 1}  # deep merge
    assert p.config["task"]["n_train"] == 4


def test_set_path_into_lists_and_dicts():
    cfg = {"methods": [{"name": "l1", "lam": 1.0}], "task": {"a": 1}}
    set_path(cfg, "methods.0.lam", 2.0)
    set_path(cfg, "task", {"b": 2})
    assert cfg == {"methods": [{"name": "l1", "lam": 2.0}], "task": {"a": 1, "b": 2}}


@pytest.mark.parametrize("raw,field", [
    ({"seeds": []}, "seeds"), ({"seeds": [-1]}, "seeds"), ({"grid": {"task.noise": []}}, "grid.task.noise"),
    ({"variants": {"x": {"sett": {}}}}, "variants.x.sett"), ({"colour": 1}, "colour"),
    ({"grid": {"trainer.lr": [-1.0]}}, "trainer.lr"), ({"base_file": "nope.yaml"}, "base_file"),
])
def test_bad_sweep_fields_are_named(raw, field, tmp_path):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_sweep({"base": BASE, **raw}, root=tmp_path).points(tmp_path)


@pytest.mark.parametrize("raw,folder", [({"seeds": [0, 0]}, "default/seed0"),
                                         ({"grid": {"task.noise": [0.1, 0.1]}}, "default/task.noise=0.1/seed0")])
def test_a_seed_or_axis_value_given_twice_is_refused_before_two_runs_share_a_folder(raw, folder, tmp_path):
    """Two points in one folder fought over its lock: every point failed, with no error file to read."""
    with pytest.raises(ConfigError, match=f"two sweep points share the folder {folder}: a seed or an axis value"):
        parse_sweep({"base": BASE, **raw}, root=tmp_path).points(tmp_path)


def test_failed_point_is_recorded_and_others_complete_then_completed_points_are_skipped(tmp_path):
    spec = _spec(variants={
        "vanilla": {"set": {"methods": []}},
        # SINDy needs regular sampling: this point raises at run time
        "broken": {"set": {"model": {"kind": "sindy"}, "task": {"irregular": 0.5}}},
    })
    counts = run_sweep(spec, tmp_path, workers=2, progress=False)
    assert counts == {"complete_before": 0, "changed": 0, "completed": 2, "diverged": 0, "failed": 2,
                      "interrupted": 0, "not started": 0}
    err = json.loads((tmp_path / "broken" / "seed0" / "error.json").read_text())
    assert "regularly sampled" in err["error"]
    mtime = (tmp_path / "vanilla" / "seed0" / "results.json").stat().st_mtime_ns
    again = run_sweep(spec, tmp_path, workers=2, progress=False)
    assert again["complete_before"] == 2 and again["failed"] == 2  # failures retried, completes skipped
    assert (tmp_path / "vanilla" / "seed0" / "results.json").stat().st_mtime_ns == mtime


def test_interrupted_point_is_resumed_to_the_uninterrupted_numbers(tmp_path, stop_after):
    from sparsedyn.train import clear_stop

    full = _spec()
    full.seeds = [0]
    (point,) = full.points(tmp_path / "a")
    stop_after(2)
    run_experiment(parse_config(point.config), point.run_dir)  # stopped after epoch 2, as by a Ctrl-C
    clear_stop()
    assert point.status() == "interrupted"
    run_sweep(full, tmp_path / "a", workers=1, progress=False)
    run_sweep(full, tmp_path / "b", workers=1, progress=False)
    a = json.loads((tmp_path / "a" / "default" / "seed0" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "default" / "seed0" / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["epochs_run"] == 3


def test_local_and_ray_backends_give_identical_metrics(tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray backend test needs the optional extra sparsedyn[ray]")
    spec = _spec(variants={"vanilla": {"set": {"methods": []}},
                           "pathreg": {"set": {"methods": [{"name": "pathreg", "lambda_paths": 1e-3}]}}})
    run_sweep(spec, tmp_path / "local", backend="local", workers=2, progress=False)
    run_sweep(spec, tmp_path / "ray", backend="ray", workers=2, progress=False)
    assert not ray.is_initialized()  # the backend shut down the Ray it started
    for p in spec.points(tmp_path / "local"):
        rel = p.run_dir.relative_to(tmp_path / "local")
        a = json.loads((p.run_dir / "results.json").read_text())["metrics"]
        b = json.loads((tmp_path / "ray" / rel / "results.json").read_text())["metrics"]
        assert a == b, rel


def test_base_overrides_merge_over_base_file(tmp_path):
    import yaml

    (tmp_path / "b.yaml").write_text(yaml.safe_dump(BASE))
    spec = parse_sweep({"base_file": "b.yaml", "base": {"trainer": {"epochs": 7}}}, root=tmp_path)
    (p,) = spec.points(tmp_path)
    assert p.config["trainer"]["epochs"] == 7 and p.config["trainer"]["progress"] is False
    assert p.config["task"]["n_train"] == 4


def test_an_at_axis_sets_several_sections_per_value_without_a_product(tmp_path):
    spec = _spec(grid={"@system": {"small": {"task": {"system_params": {"n": 3}}, "trainer": {"epochs": 2}},
                                   "big": {"task": {"system_params": {"n": 4}}, "trainer": {"epochs": 3}}}})
    points = spec.points(tmp_path)
    got = {(p.labels["@system"], p.config["task"]["system_params"]["n"], p.config["trainer"]["epochs"])
           for p in points}
    assert got == {("small", 3, 2), ("big", 4, 3)}
    assert {p.run_dir.parent.name for p in points} == {"system=small", "system=big"}
    run_sweep(_spec(grid={"@system": {"small": {"trainer": {"epochs": 1}}}}), tmp_path / "r", workers=1,
              progress=False)
    point = json.loads(next((tmp_path / "r").rglob("point.json")).read_text())
    assert point["labels"] == {"system": "small"}  # as the folder reads: `report --by system`
    with pytest.raises(ConfigError, match="mappings of config sections"):
        _spec(grid={"@system": {"a": 1.0}}).points(tmp_path)


def test_a_lottery_source_in_a_relative_runs_dir_is_found_wherever_the_sweep_file_is(tmp_path, monkeypatch):
    # probe: with the sweep file in configs/sweeps and --out runs/x, "{runs}" resolved against configs/sweeps
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "sweeps").mkdir(parents=True)
    spec = parse_sweep({"name": "s", "base": BASE, "seeds": [0], "variants": {
        "src": {}, "ticket": {"set": {"lottery": {"from_run": "{runs}/src/seed{seed}"}}}}},
        root=tmp_path / "configs" / "sweeps")
    ticket = [p for p in spec.points(Path("runs") / "x") if p.variant == "ticket"][0]
    assert ticket.config["lottery"]["from_run"] == str(tmp_path / "runs" / "x" / "src" / "seed{seed}")
