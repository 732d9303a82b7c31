import numpy as np
import pytest
import torch

from conftest import require_shared
from sparsedyn.nn.fields import MLP
from sparsedyn.nn.ode import NeuralODE, SecondOrderODE
from sparsedyn.tasks.mocap import asf_channels, forecast_mse, load_walkjog, parse_amc, parse_asf
from sparsedyn.tasks.mocap_task import MocapTask, _walkjog_sequences, initial_velocity
from sparsedyn.tasks.trajectories import Trajectories


@pytest.fixture(scope="module")
def data():
    return require_shared("mocap")


def _zero_field(model):
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    return model


def test_initial_velocity_is_exact_on_quadratics_also_on_irregular_points():
    t = torch.tensor([0.0, 0.1, 0.25, 0.4, 0.7])
    a, b, c = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]), torch.tensor([2.0, -1.0])
    y = (a + b * t[:, None] + c * t[:, None] ** 2)[None].repeat(3, 1, 1)  # derivative at t=0 is b
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 1] = False                    # first three observed: t = 0, .25, .4
    mask[2, 1:4] = False                  # only two observed: forward difference
    v = initial_velocity(Trajectories(t, y, mask))
    assert torch.allclose(v[0], b, atol=1e-5) and torch.allclose(v[1], b, atol=1e-5)
    assert torch.allclose(v[2], (y[2, 4] - y[2, 0]) / 0.7, atol=1e-6)


def test_sonode_with_given_velocity_and_zero_field_moves_in_straight_lines():
    model = SecondOrderODE(_zero_field(MLP(4, 2, [8])), None, solver="rk4", step_size=0.1)
    x0, v0, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]]), torch.linspace(0, 1, 6)
    assert torch.allclose(model(x0, t, v0=v0), x0[:, None] + v0[:, None] * t[None, :, None], atol=1e-6)
    with pytest.raises(ValueError, match="pass v0"):
        model(x0, t)


def test_walkjog_columns_are_every_4th_amc_frame_in_asf_order(data):
    motion = parse_amc(data / "35_01.amc", parse_asf(data / "35.asf"))
    order = [motion.channels.index(c) for c in asf_channels(parse_asf(data / "35.asf"))]
    first = load_walkjog(data)["train"][0]
    assert np.array_equal(first, motion.values[::4][:len(first)][:, order])


def test_walkjog_separates_23_walks_from_10_jogs(data):
    walks, jogs = _walkjog_sequences(data)
    assert (len(walks), len(jogs)) == (23, 10)
    assert all(s.shape[1] == 50 for s in walks + jogs)
    assert max(len(s) for s in jogs) < min(len(s) for s in walks)  # jog trials are the short ones


def test_mocap35_protocol_of_a_persistence_model_equals_a_hand_computation(data):
    task = MocapTask(data_dir=data, source="mocap35")
    assert task.eval_splits == ("val", "test") and task.horizon == 300
    assert task.splits["test"].y.shape == (4, 300, 50) and len(task.train_seqs) == 16
    # a zero vector field holds frame 0: the protocol's MSE of repeating frame 0 for 297 frames
    from sparsedyn.tasks.mocap import load_mocap35

    raw = load_mocap35(data)["test"]
    hand = np.mean([np.mean((s[3:] - s[0]) ** 2) for s in raw])
    got = task.evaluate(NeuralODE(_zero_field(MLP(50, 50, [4])), solver="rk4", step_size=0.1))["test_mse"]
    assert got == pytest.approx(hand, rel=1e-5)
    assert forecast_mse(np.repeat(raw[:, :1], 300, axis=1), raw) == pytest.approx(hand)
    trivial = task.trivial_baselines()
    assert trivial["persistence"]["test_mse"] == pytest.approx(hand, rel=1e-5)
    assert trivial["zero"]["test_mse"] == pytest.approx(forecast_mse(np.zeros_like(raw), raw), rel=1e-5)  # ~33.7


def test_training_windows_start_at_observed_frames_and_noise_stays_off_the_test(data):
    task = MocapTask(data_dir=data, source="mocap35", window=10, windows_per_epoch=40, noise=0.5, irregular=0.5,
                     data_seed=3)
    batches = list(task.train_batches(16, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [16, 16, 8]
    assert all(b.y.shape[1:] == (10, 50) and bool(b.mask[:, 0].all()) for b in batches)
    hidden = 1 - torch.cat([s.mask for s in task.train_seqs], 1).float().mean()
    assert 0.45 < float(hidden) < 0.55
    observed = int(sum(int(s.mask.sum()) for s in task.train_seqs))
    assert task.field_inputs().shape == (observed, 50)  # every training sequence's observed frames
    clean = MocapTask(data_dir=data, source="mocap35")
    assert torch.equal(task.splits["test"].y, clean.splits["test"].y)
    assert not torch.equal(task.splits["val"].y, clean.splits["val"].y)


def test_walkjog_task_scores_walks_and_jogs_over_the_shortest_jog(data):
    task = MocapTask(data_dir=data, source="walkjog")
    assert task.eval_splits == ("val", "test", "test_jog")
    # the shortest jog has 35 frames, i.e. 34 root displacements
    assert task.splits["test_jog"].y.shape[0] == 10 and task.horizon == task.splits["test"].y.shape[1] == 34


def test_a_sonode_with_a_velocity_network_ignores_the_frames_and_trains_the_network(data):
    """velocity: network gives the SONODE an initial-velocity MLP of x0 (the paper's design): its forecast
    does not change when frames 1-2 change (the frames' finite difference is not used), and the
    network's weights get gradients from the forecast loss."""
    from sparsedyn.config import ModelConfig

    task = MocapTask(data_dir=data, window=5, windows_per_epoch=4, velocity="network")
    model = task.build_model(ModelConfig(kind="sonode", hidden=[8], velocity_hidden=[8]))
    assert isinstance(model, SecondOrderODE) and model.init_velocity is not None
    test = task.splits["test"]
    moved = Trajectories(test.t, test.y.clone(), test.mask)
    moved.y[:, 1:3] += 1.0
    with torch.no_grad():
        assert torch.equal(task.predict(model, test), task.predict(model, moved))
    task.loss(model, next(iter(task.train_batches(4, torch.Generator().manual_seed(0))))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.init_velocity.parameters())
    frames = MocapTask(data_dir=data, window=5, windows_per_epoch=4)  # the default: velocity from the frames
    assert frames.build_model(ModelConfig(kind="sonode", hidden=[8])).init_velocity is None
    with pytest.raises(ValueError, match="velocity\n.*'frames' or 'network'"):
        MocapTask(data_dir=data, velocity="guess")


def test_bad_mocap_options_are_named(data):
    with pytest.raises(ValueError, match="source\n.*'mocap35' or 'walkjog'"):
        MocapTask(data_dir=data, source="dance")
    with pytest.raises(ValueError, match="irregular"):
        MocapTask(data_dir=data, irregular=1.0)


def test_a_mocap_report_carries_the_cmu_acknowledgement(data, tmp_path):
    from sparsedyn.config import ConfigError, parse_config
    from sparsedyn.report import build_report
    from sparsedyn.runner import run_experiment
    from sparsedyn.tasks.mocap import ACKNOWLEDGEMENT

    cfg = {"task": {"name": "mocap", "data_dir": str(data), "window": 5, "windows_per_epoch": 8},
           "model": {"kind": "sonode", "hidden": [8]},
           "trainer": {"epochs": 1, "eval_every": 1, "progress": False}}
    run_dir = tmp_path / "runs" / "vanilla" / "seed0"
    result = run_experiment(parse_config(cfg), run_dir)
    (run_dir / "point.json").write_text('{"variant": "vanilla", "labels": {}, "seed": 0}')
    assert result["status"] == "completed" and np.isfinite(result["metrics"]["test_mse"])
    out = build_report(tmp_path / "runs", tmp_path / "report", by=None)["out"]
    assert ACKNOWLEDGEMENT in (out / "report.md").read_text()
    assert (out / "forecasts.png").stat().st_size > 10_000  # the forecast figure was drawn
    with pytest.raises(ConfigError, match=r"task\.source:"):
        parse_config({**cfg, "task": {**cfg["task"], "source": "dance"}})
