import pytest
import torch

from aann.models import fold_batch_norm, get_model, has_batch_norm, list_models, trainable_parameters
from aann.pruning import prune_to
from aann.ternary import check_sparse_ternary, sparse_layers, ternarize, value_counts


def test_mnist_net_shapes():
    net = get_model("mnist_net")
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert net.fc.in_features == 1568
    assert [l.weight.numel() for l in sparse_layers(net).values()] == [400, 12800, 15680]


def test_car_net_576():
    net = get_model("car_net")
    assert net(torch.rand(2, 1, 96, 96)).shape == (2, 3)
    assert sparse_layers(net)["fc1.0"].in_features == 576


def test_hidden_units_are_clamped():
    net = get_model("mnist_net")
    h = net.layer1(10 * torch.rand(2, 1, 28, 28))
    assert h.abs().max() <= 1.0
    out = get_model("mnist_net", clamp_output=True)(10 * torch.rand(2, 1, 28, 28))
    assert out.abs().max() <= 1.0


def test_unknown_model():
    with pytest.raises(KeyError, match="unknown model 'resnet'"):
        get_model("resnet")
    assert {"mnist_net", "car_net"} <= set(list_models())


def _trained_bn_net(name, ternary, seed=0):
    """A net with BatchNorm whose running statistics and affine parameters are far from the
    identity (one training-mode pass over scaled inputs, then random gamma, beta of both signs)."""
    torch.manual_seed(seed)
    net = get_model(name, batch_norm=True)
    prune_to(net, 80, scope="layer")
    if ternary:
        ternarize(net)
        with torch.no_grad():
            net.fc.scale.fill_(1.0)  # outputs that vary: a fold that went wrong shows
    side = 96 if name == "car_net" else 28
    with torch.no_grad():
        net.train()
        for _ in range(3):
            net(3 * torch.rand(32, 1, side, side))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.randn_like(m.weight))  # some negative: negative channel scales
                m.bias.copy_(0.5 * torch.randn_like(m.bias))
    return net.eval(), torch.rand(64, 1, side, side)


@pytest.mark.parametrize("name", ["mnist_net", "car_net"])
@pytest.mark.parametrize("ternary", [False, True])
def test_folding_batch_norm_keeps_the_function_and_the_architecture(name, ternary):
    net, x = _trained_bn_net(name, ternary)
    assert has_batch_norm(net) and [type(m).__name__ for m in net.layer1] == [
        "SparseTernaryConv2d", "BatchNorm2d", "Hardtanh", "MaxPool2d"]  # the tutorial's layer1.0 / .1 / .2 / .3
    folded = fold_batch_norm(net)
    assert not has_batch_norm(folded) and not folded.training
    assert folded.hparams == {**net.hparams, "batch_norm": False, "scale": "channel"}
    with torch.no_grad():
        out, ref = folded(x), net(x)
    assert ref.std(0).mean() > 1e-3  # outputs that differ from image to image
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max())
    for (n, a), b in zip(sparse_layers(net).items(), sparse_layers(folded).values()):
        assert torch.equal(a.mask, b.mask) and bool(a.is_ternary) == bool(b.is_ternary) == ternary, n
        if ternary:  # (a dense layer's weights take g_c's sign: only ternary values are kept as they are)
            assert torch.equal(a.ternary_values(), b.ternary_values()), n
    if ternary:
        check_sparse_ternary(folded, 80)
        assert value_counts(folded) == value_counts(net)
        assert (folded.layer1[0].scale < 0).any()  # a negative gamma folds into a negative scale


def test_folding_a_net_without_batch_norm_changes_nothing_but_the_scale_layout():
    net, x = _trained_bn_net("mnist_net", True)
    plain = fold_batch_norm(net)
    again = fold_batch_norm(plain)
    with torch.no_grad():
        assert torch.equal(again(x), plain(x))


def test_fold_needs_a_staged_net():
    with pytest.raises(TypeError, match="staged"):
        fold_batch_norm(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_scales_that_a_norm_divides_out_are_not_trained():
    plain, bn = get_model("mnist_net"), get_model("car_net", batch_norm=True)
    assert [id(p) for p in trainable_parameters(plain)] == [id(p) for p in plain.parameters()]
    kept = {id(p) for p in trainable_parameters(bn)}
    assert id(bn.layer1[0].scale) not in kept and id(bn.layer2[0].scale) not in kept
    assert {id(bn.fc1[0].scale), id(bn.fc.scale), id(bn.layer1[1].weight), id(bn.layer1[0].weight)} <= kept
    assert len(kept) == len(list(bn.parameters())) - 2
