import math

import pytest
import torch

from aann.models import get_model
from aann.pruning import check_sparsity, gradual_schedule, prune_to
from aann.ternary import (check_sparse_ternary, sparse_layer, sparse_layers, ternarize,
                          value_counts)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return get_model("mnist_net")


def test_paper_layer_names(net):
    assert list(sparse_layers(net)) == ["1.0", "2.0", "fc"]
    assert sparse_layer(net, "fc") is net.fc


def test_unknown_layer_is_a_clear_error(net):
    with pytest.raises(KeyError, match=r"unknown layer '3.0'.*1.0, 2.0, fc"):
        sparse_layer(net, "3.0")
    with pytest.raises(KeyError, match="unknown layer"):
        prune_to(net, 50, layers=["conv9"])


@pytest.mark.parametrize("bad", [-1, -0.001, 100, 100.5, 250, math.nan])
def test_sparsity_outside_0_100_is_rejected(bad, net):
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        check_sparsity(bad)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        prune_to(net, bad)


@pytest.mark.parametrize("p", [0, 10, 33.3, 87, 90, 95, 99])
def test_layer_scope_gives_exact_zeros_per_layer(net, p):
    prune_to(net, p, scope="layer")
    for name, layer in sparse_layers(net).items():
        n = layer.weight.numel()
        assert int((~layer.mask).sum()) == round(n * p / 100), name
        assert torch.all(layer.weight[~layer.mask] == 0)


def test_global_scope_exact_total_and_uneven_layers(net):
    with torch.no_grad():  # weights of different typical size per layer, as after training
        for std, layer in zip((1.0, 0.5, 0.3), sparse_layers(net).values()):
            layer.weight.normal_(0, std)
    prune_to(net, 90, scope="global")
    layers = sparse_layers(net).values()
    zeros = sum(int((~l.mask).sum()) for l in layers)
    total = sum(l.weight.numel() for l in layers)
    assert zeros == round(total * 0.9)
    assert len({round(l.sparsity, 3) for l in layers}) > 1  # one ranking: layers differ


def test_pruning_keeps_the_largest_magnitudes_and_masks_only_grow(net):
    before = net.fc.weight.detach().abs().clone()
    prune_to(net, 50)
    kept, dropped = before[net.fc.mask], before[~net.fc.mask]
    assert kept.min() >= dropped.max()
    old = net.fc.mask.clone()
    with torch.no_grad():  # even if a pruned weight grew back, it stays pruned
        net.fc.weight[~old] = 10.0
    prune_to(net, 70)
    assert torch.all(~net.fc.mask[~old])


def test_gradual_schedule_constant_rate_and_levels():
    sched = gradual_schedule([0, 50, 85, 87, 90, 95], n2=38)
    assert len(sched) == 38
    ends = [s[-1] for s in sched]
    assert ends[-1] == 95
    assert all(abs((b - a) - 2.5) < 1e-9 for a, b in zip(ends, ends[1:]))
    flat = [p for s in sched for p in s]
    for level in (50, 85, 87, 90, 95):
        assert level in flat
    assert flat == sorted(flat)


def test_gradual_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        gradual_schedule([50, 100], n2=10)
    with pytest.raises(ValueError, match="n2"):
        gradual_schedule([50], n2=0)


def test_ternarize_values_scale_and_counts(net):
    prune_to(net, 90, scope="layer")
    zeros_before = {n: (~l.mask).clone() for n, l in sparse_layers(net).items()}
    ternarize(net)
    per_layer = check_sparse_ternary(net, 90, scope="layer")
    assert all(abs(v - 90) < 0.01 for v in per_layer.values())
    for name, layer in sparse_layers(net).items():
        t = layer.ternary_values()
        assert set(torch.unique(t).tolist()) <= {-1, 0, 1}
        assert torch.equal(t == 0, zeros_before[name])
        assert layer.scale.item() > 0
    counts = value_counts(net)
    assert counts["fc"][0] == round(net.fc.weight.numel() * 0.9)
    assert sum(counts["1.0"].values()) == 400


def test_ternary_training_keeps_zeros_and_moves_signs(net):
    prune_to(net, 80, scope="layer")
    ternarize(net)
    mask = net.fc.mask.clone()
    x = torch.rand(64, 1, 28, 28)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 10, (64,)))
    loss.backward()
    assert net.fc.weight.grad[mask].abs().sum() > 0  # straight-through: latent weights learn
    assert torch.all(net.fc.weight.grad[~mask] == 0)  # pruned weights get nothing
    opt.step()
    check_sparse_ternary(net, 80, scope="layer")
    assert torch.equal(net.fc.mask, mask)


def test_global_pruning_refuses_to_empty_a_layer(net):
    # at initialisation fc's weights are the smallest (fan-in 1568), so 80 % globally takes them all
    with pytest.raises(ValueError, match="every weight of layer fc"):
        prune_to(net, 80, scope="global")


def test_check_sparse_ternary_catches_broken_invariants(net):
    prune_to(net, 90, scope="layer")
    with pytest.raises(AssertionError, match="not ternary"):
        check_sparse_ternary(net, 90)
    ternarize(net)
    check_sparse_ternary(net, 90, scope="layer")
    check_sparse_ternary(net, 90, scope="global")
    with pytest.raises(AssertionError, match="zeros"):
        check_sparse_ternary(net, 91, scope="layer")
    with pytest.raises(AssertionError, match="zeros"):
        check_sparse_ternary(net, 91, scope="global")
    with torch.no_grad():  # a pruned weight that is not a zero of t
        net.fc.mask[0, :5] = ~net.fc.mask[0, :5]
    with pytest.raises(AssertionError):
        check_sparse_ternary(net, 90)
    with torch.no_grad():  # t ok, but the layer no longer computes with scale * t
        net.fc.mask[0, :5] = ~net.fc.mask[0, :5]
        net.fc.is_ternary.fill_(False)
        net.fc.ternarize_()
    check_sparse_ternary(net, 90)


def test_per_channel_scale_starts_at_each_channels_mean_magnitude():
    torch.manual_seed(0)
    net = get_model("mnist_net", scale="channel")
    prune_to(net, 80, scope="layer")
    w = net.layer1[0].weight.detach().clone()
    m = net.layer1[0].mask
    ternarize(net)
    expected = (w.abs() * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    assert torch.allclose(net.layer1[0].scale.flatten(), expected)
    check_sparse_ternary(net, 80, scope="layer")
    with pytest.raises(ValueError, match="scale must be one of"):
        get_model("mnist_net", scale="row")
