"""The networks of the book, in a small registry (``get_model("mnist_net")``), torchvision style.

Module paths follow the paper's figures: ``layer1.0`` is the first convolution, which the paper
calls "1.0"; ``fc`` is the classifier. Every hidden unit goes through HardTanh (clamp to [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .ternary import SparseTernaryConv2d, SparseTernaryLinear

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


@dataclass(frozen=True)
class Stage:
    """One weight layer and what follows it up to the next weight layer.

    A network of the book is a chain of stages, ``x = stage.post(stage.layer(x))``; ``post`` acts on
    each channel (or unit) separately (HardTanh, max-pooling, flattening), which is what lets the
    neighbour evaluator recompute only the channels a bit-swap touches.
    """

    name: str  # the paper's layer name
    layer: nn.Module
    post: nn.Module


class StagedNet(nn.Module):
    """Base of the book's networks: ``forward`` is the chain of ``stages()``.

    Subclasses build their stages once, with ``_set_stages``, after creating their layers; the
    stages only refer to registered submodules (plus parameter-free wrappers), so ``to``,
    ``double`` and ``deepcopy`` keep them consistent.
    """

    def _set_stages(self, stages: list[Stage]) -> None:
        object.__setattr__(self, "_stages", tuple(stages))  # not registered: no second copy of the modules

    def stages(self) -> list[Stage]:
        return list(self._stages)

    def forward(self, x):
        for stage in self._stages:
            x = stage.post(stage.layer(x))
        return x


def _conv_block(c_in, c_out, k, stride=1, padding=0, scale="layer"):
    return nn.Sequential(
        SparseTernaryConv2d(c_in, c_out, k, stride=stride, padding=padding, scale=scale), nn.Hardtanh(), nn.MaxPool2d(2)
    )


class MnistNet(StagedNet):
    """Section 3.1: conv 5x5 (16) -> pool -> conv 5x5 (32) -> pool -> fc 1568 x 10.

    Padding 2 keeps 28 x 28 through each convolution, so 32 x 7 x 7 = 1568 reach ``fc``.
    ``clamp_output`` also passes the 10 outputs through HardTanh, as "every unit" in the paper
    would; off by default: the outputs are the logits of a softmax classifier (see the chapter).
    ``scale``: one scale per layer (``"layer"``) or per output channel (``"channel"``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, clamp_output: bool = False,
                 scale: str = "layer"):
        super().__init__()
        self.layer1 = _conv_block(in_channels, 16, 5, padding=2, scale=scale)
        self.layer2 = _conv_block(16, 32, 5, padding=2, scale=scale)
        self.fc = SparseTernaryLinear(32 * 7 * 7, num_classes, scale=scale)
        self.out = nn.Hardtanh() if clamp_output else nn.Identity()
        self._set_stages([
            Stage("1.0", self.layer1[0], self.layer1[1:]),
            Stage("2.0", self.layer2[0], nn.Sequential(*self.layer2[1:], nn.Flatten())),
            Stage("fc", self.fc, self.out),
        ])


class CarNet(StagedNet):
    """Section 3.1's car-racing net: conv 7x7 (32) -> pool -> conv 5x5 (64) -> pool -> fc 576 x 100
    -> fc 100 x 3, on 96 x 96 grayscale frames.

    576 = 64 x 3 x 3: 96 -conv7/3-> 30 -pool-> 15 -conv5/2-> 6 -pool-> 3.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3, clamp_output: bool = False,
                 scale: str = "layer"):
        super().__init__()
        self.layer1 = _conv_block(in_channels, 32, 7, stride=3, scale=scale)
        self.layer2 = _conv_block(32, 64, 5, stride=2, scale=scale)
        self.fc1 = nn.Sequential(SparseTernaryLinear(576, 100, scale=scale), nn.Hardtanh())
        self.fc = SparseTernaryLinear(100, num_classes, scale=scale)
        self.out = nn.Hardtanh() if clamp_output else nn.Identity()
        self._set_stages([
            Stage("1.0", self.layer1[0], self.layer1[1:]),
            Stage("2.0", self.layer2[0], nn.Sequential(*self.layer2[1:], nn.Flatten())),
            Stage("fc1.0", self.fc1[0], self.fc1[1]),
            Stage("fc", self.fc, self.out),
        ])


register_model("mnist_net")(MnistNet)
register_model("car_net")(CarNet)
