import pytest
import torch

from sparsedyn import analysis
from sparsedyn.methods import MagnitudePruning, prune_to, schedule_sparsity
from sparsedyn.nn import MLP, mask_of


def test_schedules_hand_values():
    assert schedule_sparsity(5, 0.9, 0, 10, kind="linear") == pytest.approx(0.45)
    assert schedule_sparsity(12, 0.9, 0, 10, kind="linear") == pytest.approx(0.9)
    # cubic: sf + (s0 - sf)(1 - 1/2)^3 = 0.9 - 0.9/8
    assert schedule_sparsity(5, 0.9, 0, 10, kind="cubic") == pytest.approx(0.9 - 0.9 / 8)
    assert schedule_sparsity(0, 0.9, 0, 10, initial=0.2, kind="cubic") == pytest.approx(0.2)
    assert schedule_sparsity(-1, 0.9, 0, 10) == 0.0


def test_global_pruning_hits_exact_sparsity_and_removes_smallest():
    model = MLP(10, 10, (20,))
    method = MagnitudePruning(sparsity=0.7)
    method.prepare(model)
    all_w = torch.cat([layer.weight.detach().abs().flatten() for layer in model.layers])
    threshold = all_w.sort().values[int(round(0.7 * all_w.numel())) - 1]
    method.on_epoch_end(model, 1)
    assert analysis.weight_sparsity(model)["global"] == pytest.approx(round(0.7 * 400) / 400)
    for layer in model.layers:
        w = layer.parametrizations.weight.original.detach().abs()
        pruned = mask_of(layer).mask == 0
        assert torch.all(w[pruned] <= threshold) and torch.all(w[~pruned] >= threshold)


def test_per_tensor_scope_prunes_each_tensor_equally():
    model = MLP(10, 10, (20,))
    MagnitudePruning(sparsity=0.5, scope="per_tensor").prepare(model)
    prune_to(model, 0.5, "per_tensor")
    ws = analysis.weight_sparsity(model)
    assert ws["layers.0.weight"] == pytest.approx(0.5) and ws["layers.1.weight"] == pytest.approx(0.5)


def test_gradual_linear_schedule_is_monotone_and_ends_exactly_at_target():
    model = MLP(8, 8, (16,))
    method = MagnitudePruning(sparsity=0.8, schedule="linear", start=1, end=5)
    method.prepare(model)
    previous_mask = None
    for epoch in range(1, 8):
        with torch.no_grad():  # weights move between epochs; pruned ones must stay pruned
            for layer in model.layers:
                layer.parametrizations.weight.original.add_(torch.randn_like(layer.weight) * 0.5)
        method.on_epoch_end(model, epoch)
        mask = torch.cat([mask_of(layer).mask.flatten() for layer in model.layers])
        if previous_mask is not None:
            assert torch.all(mask <= previous_mask)
        previous_mask = mask
        expected = 0.8 * (epoch - 1) / 4 if epoch <= 5 else 0.8
        assert analysis.weight_sparsity(model)["global"] == pytest.approx(expected, abs=1 / 256)
    assert analysis.weight_sparsity(model)["global"] == pytest.approx(round(0.8 * 256) / 256)


@pytest.mark.parametrize("kwargs,field", [
    ({"sparsity": 1.0}, "sparsity"), ({"scope": "layer"}, "scope"), ({"schedule": "exp"}, "schedule"),
    ({"schedule": "linear", "start": 3, "end": 1}, "end"), ({"start": -1}, "start"),
])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MagnitudePruning(**kwargs)


def test_a_schedule_that_ends_after_the_sparsification_epochs_warns_with_what_it_reaches():
    """Pruning runs in the sparsification epochs only: ending later, the run would stop short of its target
    silently (a 3-epoch run of a schedule to 95% at epoch 100 ended at 2%)."""
    import warnings

    from sparsedyn.methods import Compose
    from sparsedyn.runner import _warn_unfinished_schedules

    late = MagnitudePruning(sparsity=0.95, schedule="linear", start=1, end=100)
    with pytest.warns(UserWarning, match=r"methods.1 \(magnitude\): its schedule ends at epoch 100, after the "
                                         r"run's 3 .* reaches sparsity 0.0192 of the 0.95 asked"):
        _warn_unfinished_schedules(Compose([MagnitudePruning(sparsity=0.5), late]), epochs=3)
    with pytest.warns(UserWarning, match="ends at epoch 5"):
        _warn_unfinished_schedules(Compose([MagnitudePruning(sparsity=0.5, schedule="oneshot", start=5)]), epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_unfinished_schedules(Compose([late]), epochs=100)  # ends on the last epoch: reached
        _warn_unfinished_schedules(Compose([MagnitudePruning(sparsity=0.5, schedule="oneshot", start=4)]), epochs=4)
