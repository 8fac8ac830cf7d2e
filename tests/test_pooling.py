"""aann.pooling: the CPU shortcuts for 2x2 max-pooling compute what max_pool2d computes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aann.models import get_model
from aann.pooling import MaxPool2d, is_plain_2x2, max_pool_2x2, max_pool_2x2_values


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32)  # compares signs of zeros too


def _inputs(gen):
    """Shapes with odd sides and many channels (the channels-last kernel vectorises over them);
    values full of ties: small integers, signed zeros, HardTanh's saturation, plain noise."""
    for trial in range(48):
        shape = (1 + trial % 5, 1 + (7 * trial) % 37, 2 + (3 * trial) % 13, 2 + (5 * trial) % 15)
        kind = trial % 4
        if kind == 0:
            x = torch.randint(-2, 3, shape, generator=gen).float()
        elif kind == 1:
            x = torch.randint(-1, 2, shape, generator=gen).float() * 0.0  # -0.0 and +0.0
        elif kind == 2:
            x = F.hardtanh(3 * torch.randn(shape, generator=gen))
        else:
            x = torch.randn(shape, generator=gen)
        yield x.contiguous(memory_format=torch.channels_last) if trial % 3 == 0 else x


@pytest.mark.parametrize("threads", [1, 2])
def test_training_pool_equals_max_pool2d_bit_for_bit_gradients_included(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(threads)
        for x in _inputs(gen):
            x.requires_grad_()
            ref = F.max_pool2d(x, 2)
            grad = torch.randn(ref.shape, generator=gen)
            (ref_grad,) = torch.autograd.grad(ref, x, grad)
            out = max_pool_2x2(x)
            (out_grad,) = torch.autograd.grad(out, x, grad)
            assert out_grad.shape == x.shape
            for layout in (torch.contiguous_format, torch.channels_last):  # the input's layout goes on
                assert out.is_contiguous(memory_format=layout) == ref.is_contiguous(memory_format=layout)
            assert torch.equal(_bits(out), _bits(ref)), x.shape
            # ties: the gradient goes to the first maximum of the window, as in max_pool2d
            assert torch.equal(_bits(out_grad), _bits(ref_grad)), x.shape
    finally:
        torch.set_num_threads(before)


def test_evaluation_pool_equals_max_pool2d():
    gen = torch.Generator().manual_seed(0)
    for x in _inputs(gen):
        with torch.inference_mode():
            assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2)), x.shape
        assert torch.equal(max_pool_2x2_values(x), F.max_pool2d(x, 2)), x.shape


def test_other_pooling_is_the_library_s():
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    for kwargs in [dict(kernel_size=3, stride=2), dict(kernel_size=2, stride=1), dict(kernel_size=2, padding=1),
                   dict(kernel_size=2, ceil_mode=True)]:
        ours, lib = MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs)
        assert not is_plain_2x2(ours)
        assert torch.equal(ours(x), lib(x))
    assert is_plain_2x2(MaxPool2d(2)) and is_plain_2x2(nn.MaxPool2d((2, 2), 2))
    with pytest.raises(RuntimeError):  # too small for a window: the library's own error
        MaxPool2d(2)(torch.randn(1, 1, 1, 5, requires_grad=True))


@pytest.mark.parametrize("name", ["mnist_net", "vgg_cifar"])
def test_training_with_the_fast_pool_is_the_training_with_the_library_s(name, monkeypatch):
    """A few Adam steps end in the same weights, bit for bit, whichever pooling computes them."""
    shape = (32, 1, 28, 28) if name == "mnist_net" else (32, 3, 32, 32)

    def train():
        torch.manual_seed(0)
        model = get_model(name)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            x = torch.rand(shape, generator=gen).round()  # blank regions: ties in every pooling window
            loss = F.cross_entropy(model(x), torch.randint(0, 10, (shape[0],), generator=gen))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.state_dict()

    fast = train()
    monkeypatch.setattr(MaxPool2d, "forward", nn.MaxPool2d.forward)
    library = train()
    for key in fast:
        assert torch.equal(_bits(fast[key].float()), _bits(library[key].float())), key
