import pytest
import torch

from aann.models import get_model, list_models
from aann.ternary import sparse_layers


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
