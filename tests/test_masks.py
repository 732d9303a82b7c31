import pickle

import pytest
import torch

from sparsedyn.nn import MLP, add_mask, mask_of, raw_parameter, squash


def _masked_linear():
    lin = torch.nn.Linear(4, 3)
    mask = add_mask(lin)
    mask.mask[0, 1] = 0
    mask.mask[2, :2] = 0
    return lin, mask


def test_masked_entries_have_zero_gradient_and_zero_effective_weight():
    lin, mask = _masked_linear()
    lin(torch.randn(5, 4)).pow(2).sum().backward()
    grad = raw_parameter(lin).grad
    assert torch.all(grad[mask.mask == 0] == 0)
    assert torch.all(grad[mask.mask == 1] != 0)
    assert torch.all(lin.weight[mask.mask == 0] == 0)


def test_all_ones_mask_changes_neither_forward_nor_backward():
    torch.manual_seed(1)
    plain = torch.nn.Linear(4, 3)
    masked = torch.nn.Linear(4, 3)
    masked.load_state_dict(plain.state_dict())
    add_mask(masked)
    x = torch.randn(6, 4)
    assert torch.equal(plain(x), masked(x))
    plain(x).sum().backward()
    masked(x).sum().backward()
    assert torch.equal(plain.weight.grad, raw_parameter(masked).grad)


def test_parameter_identity_is_stable_and_optimizer_keeps_working():
    lin = torch.nn.Linear(4, 3)
    original = lin.weight
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    mask = add_mask(lin)
    assert raw_parameter(lin) is original  # the optimizer still holds the trained tensor
    mask.mask[1] = 0
    before = original.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        lin(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(original[1], before[1])  # masked row never moved
    assert not torch.equal(original[0], before[0])
    assert torch.all(lin.weight[1] == 0)


def test_state_dict_round_trip():
    lin, mask = _masked_linear()
    other = torch.nn.Linear(4, 3)
    add_mask(other)
    other.load_state_dict(lin.state_dict())
    assert torch.equal(mask_of(other).mask, mask.mask)
    assert torch.equal(other.weight, lin.weight)


def test_add_mask_is_idempotent():
    lin, mask = _masked_linear()
    assert add_mask(lin) is mask


def test_squash_makes_mask_permanent_and_picklable():
    model = MLP(4, 2, (5,))
    m = add_mask(model.layers[0])
    m.mask[:, 0] = 0
    x = torch.randn(3, 4)
    y = model(x)
    squash(model)
    assert mask_of(model.layers[0]) is None
    assert torch.allclose(model(x), y)
    assert torch.all(model.layers[0].weight[:, 0] == 0)
    clone = pickle.loads(pickle.dumps(model))
    assert torch.allclose(clone(x), y)


@pytest.mark.parametrize("dtype", [torch.float64])
def test_masked_layer_gradcheck(dtype):
    lin = torch.nn.Linear(3, 2).to(dtype)
    mask = add_mask(lin)
    mask.mask[0, 0] = 0
    x = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: lin(inp), (x,))
