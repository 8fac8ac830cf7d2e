"""The networks of the book, in a small registry (``get_model("mnist_net")``), torchvision style.

Module paths follow the paper's figures: ``layer1.0`` is the first convolution, which the paper
calls "1.0"; ``fc`` is the classifier. Every hidden unit goes through HardTanh (clamp to [-1, 1]).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .pooling import MaxPool2d
from .ternary import SparseTernaryConv2d, SparseTernaryLinear

__all__ = ["register_model", "list_models", "get_model", "Stage", "StagedNet", "MnistNet", "CarNet",
           "has_batch_norm", "trainable_parameters", "fold_batch_norm", "AlexNetCifar", "VggCifar", "EluMlp",
           "AllConvElu", "IMAGENET_MODELS", "MissingWeightsError", "imagenet_weights_path", "imagenet_model"]

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
    ``double`` and ``deepcopy`` keep them consistent. They keep their constructor's arguments in
    ``hparams``: ``type(net)(**net.hparams)`` builds the same architecture afresh.
    """

    hparams: dict

    def _set_stages(self, stages: list[Stage]) -> None:
        object.__setattr__(self, "_stages", tuple(stages))  # not registered: no second copy of the modules

    def stages(self) -> list[Stage]:
        return list(self._stages)

    def forward(self, x):
        for stage in self._stages:
            x = stage.post(stage.layer(x))
        return x


def _conv_block(c_in, c_out, k, stride=1, padding=0, scale="layer", batch_norm=False):
    # with batch_norm, PyTorch's tutorial layout: layer<i>.0 conv, .1 BatchNorm2d, .2 activation, .3 pool
    norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
    return nn.Sequential(
        SparseTernaryConv2d(c_in, c_out, k, stride=stride, padding=padding, scale=scale), *norm, nn.Hardtanh(),
        MaxPool2d(2)
    )


class MnistNet(StagedNet):
    """Section 3.1: conv 5x5 (16) -> pool -> conv 5x5 (32) -> pool -> fc 1568 x 10.

    Padding 2 keeps 28 x 28 through each convolution, so 32 x 7 x 7 = 1568 reach ``fc``.
    ``clamp_output`` also passes the 10 outputs through HardTanh, as "every unit" in the paper
    would; off by default: the outputs are the logits of a softmax classifier (see the chapter).
    ``scale``: one scale per layer (``"layer"``) or per output channel (``"channel"``).
    ``batch_norm``: a BatchNorm2d between each convolution and its HardTanh, as in the PyTorch
    tutorial CNN whose module names (``layer1.0``, ``layer2.0``, ``fc``) and shapes the paper's net
    shares; ``fold_batch_norm`` turns a trained one into the same function without it.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, clamp_output: bool = False,
                 scale: str = "layer", batch_norm: bool = False):
        super().__init__()
        self.hparams = dict(in_channels=in_channels, num_classes=num_classes, clamp_output=clamp_output, scale=scale,
                            batch_norm=batch_norm)
        self.layer1 = _conv_block(in_channels, 16, 5, padding=2, scale=scale, batch_norm=batch_norm)
        self.layer2 = _conv_block(16, 32, 5, padding=2, scale=scale, batch_norm=batch_norm)
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
    ``batch_norm``: as in :class:`MnistNet` (after the two convolutions).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3, clamp_output: bool = False,
                 scale: str = "layer", batch_norm: bool = False):
        super().__init__()
        self.hparams = dict(in_channels=in_channels, num_classes=num_classes, clamp_output=clamp_output, scale=scale,
                            batch_norm=batch_norm)
        self.layer1 = _conv_block(in_channels, 32, 7, stride=3, scale=scale, batch_norm=batch_norm)
        self.layer2 = _conv_block(32, 64, 5, stride=2, scale=scale, batch_norm=batch_norm)
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


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def _stage_norm(stage: Stage) -> _BatchNorm | None:
    """The BatchNorm right after a stage's layer, if there is one (and no other anywhere in it)."""
    modules = list(stage.post) if isinstance(stage.post, nn.Sequential) else [stage.post]
    norms = [m for m in modules if isinstance(m, _BatchNorm)]
    if not norms:
        return None
    if len(norms) > 1 or modules[0] is not norms[0]:
        raise ValueError(f"stage {stage.name}: only a BatchNorm directly after the layer can be folded into it")
    return norms[0]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should move: all of them but the scales of layers that a
    BatchNorm follows. Such a scale is redundant (the norm divides it out; only its eps notices),
    so its gradient is nearly 0, and Adam, which steps every parameter by about its learning rate
    whatever the gradient's size, would walk it at random: in p-SIREN's step 4 it took the scale of
    layer 1.0 of a 90 % MNIST net to 0.0067 (0.29 when held at its value at ternarization) and the
    norm's running variances to 2e-5 - 6e-5, near its eps of 1e-5, so that the norm no longer
    normalised (measured with an earlier version of ``experiments/psiren_batch_norm.py``). Without BatchNorm: ``model.parameters()``."""
    frozen = set()
    if isinstance(model, StagedNet):
        frozen = {id(s.layer.scale) for s in model.stages() if _stage_norm(s) is not None}
    return [p for p in model.parameters() if id(p) not in frozen]


@torch.no_grad()
def fold_batch_norm(model: StagedNet) -> StagedNet:
    r"""The same network without its BatchNorm layers, each folded into the layer before it.

    In evaluation mode a BatchNorm is an affine map per channel, $y = g_c z + s_c$ with
    $g_c = \gamma_c / \sqrt{\sigma^2_c + \epsilon}$ (running variance) and $s_c = \beta_c - g_c \mu_c$.
    After a ternary layer $z_c = \alpha\,(t * x)_c + b_c$ this is a layer with one scale per
    output channel, $\alpha g_c$, and bias $g_c b_c + s_c$: the folded network is a
    ``scale="channel"`` network of the same class whose ternary values, masks and counts, hence its
    architecture and every bit-swap neighbour, are the original's. (A dense-mode layer gets $g_c w$.)
    Its outputs equal the original's in eval mode up to float rounding; what the neighbour evaluator
    and the perturbation sweeps see as a channel's output is then the layer's own. A negative
    $\gamma_c$ gives a negative channel scale. Returns a new network in eval mode.
    """
    if not isinstance(model, StagedNet) or not hasattr(model, "hparams"):
        raise TypeError("fold_batch_norm needs one of the book's staged networks (get_model('mnist_net', ...))")
    param = next(model.parameters())
    folded = type(model)(**{**model.hparams, "batch_norm": False, "scale": "channel"}).to(param.device, param.dtype)
    for src, dst in zip(model.stages(), folded.stages()):
        a, b = src.layer, dst.layer
        c = a.weight.shape[0]
        norm = _stage_norm(src)
        if norm is None:
            g = torch.ones(c, dtype=param.dtype, device=param.device)
            s = torch.zeros_like(g)
        else:
            gamma = norm.weight if norm.weight is not None else torch.ones_like(norm.running_mean)
            beta = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
            g = gamma / torch.sqrt(norm.running_var + norm.eps)
            s = beta - g * norm.running_mean
        per_channel = (c,) + (1,) * (a.weight.dim() - 1)
        b.mask.copy_(a.mask)
        b.is_ternary.copy_(a.is_ternary)
        scale = a.scale.expand(per_channel) if a.scale.dim() == 0 else a.scale
        if bool(a.is_ternary):
            b.weight.copy_(a.weight)  # only the signs count: g_c goes into the scale
            b.scale.copy_(scale * g.view(per_channel))
        else:
            b.weight.copy_(a.weight * g.view(per_channel))
            b.scale.copy_(scale)
        bias = a.bias if a.bias is not None else torch.zeros_like(g)
        b.bias.copy_(g * bias + s)
    return folded.eval()


# --- The CIFAR-10 nets of the robustness chapter (ordinary float layers, ReLU, as in the paper). ---


class AlexNetCifar(nn.Sequential):
    """AlexNet's shape on 32 x 32 images: 5 convolutions and 3 dense layers, max-pooling after
    conv1, conv2 and conv5, dropout before dense1 and dense2 (AlexNet's places), ReLU throughout.

    Layer names are the paper's (``conv1`` ... ``conv5``, ``dense1`` ... ``dense3``). Widths are
    scaled down from AlexNet's 96-256-384-384-256 / 4096-4096 so that the book trains it on a CPU;
    as in AlexNet, conv2 carries the most multiply-adds and dense1 the most weights.
    32 -conv1/pool-> 16 -conv2/pool-> 8 -conv3,4,5/pool-> 4: dense1 sees ``c5`` x 4 x 4.
    """

    def __init__(self, widths=(24, 48, 64, 64, 48), hidden: int = 256, num_classes: int = 10,
                 dropout: float = 0.5):
        c1, c2, c3, c4, c5 = widths
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(3, c1, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c3, c4, 3, padding=1)), ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(c4, c5, 3, padding=1)), ("relu5", nn.ReLU()), ("pool5", MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("drop1", nn.Dropout(dropout)), ("dense1", nn.Linear(c5 * 16, hidden)), ("relu6", nn.ReLU()),
            ("drop2", nn.Dropout(dropout)), ("dense2", nn.Linear(hidden, hidden)), ("relu7", nn.ReLU()),
            ("dense3", nn.Linear(hidden, num_classes)),
        ]))
        _kaiming(self)


class VggCifar(nn.Sequential):
    """VGG-16's layout on 32 x 32 images: 13 convolutions 3 x 3 in five blocks (2, 2, 3, 3, 3),
    max-pooling after each block, then three dense layers (``fc1``, ``fc2`` with dropout, ``fc3``).
    No batch normalisation, as in VGG-16. Names follow Keras's VGG-16 (``block3.conv1``), the
    paper's Fig. 5. Widths scaled down from 64-128-256-512-512 (to 16-32-64-128-128) for a CPU."""

    def __init__(self, widths=(16, 32, 64, 128, 128), hidden: int = 128, num_classes: int = 10,
                 dropout: float = 0.5):
        blocks, c_in = [], 3
        for b, (c, n) in enumerate(zip(widths, (2, 2, 3, 3, 3)), 1):
            block = []
            for i in range(1, n + 1):
                block += [(f"conv{i}", nn.Conv2d(c_in, c, 3, padding=1)), (f"relu{i}", nn.ReLU())]
                c_in = c
            block.append(("pool", MaxPool2d(2)))
            blocks.append((f"block{b}", nn.Sequential(OrderedDict(block))))
        super().__init__(OrderedDict(blocks + [
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(c_in, hidden)), ("relu1", nn.ReLU()), ("drop1", nn.Dropout(dropout)),
            ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU()), ("drop2", nn.Dropout(dropout)),
            ("fc3", nn.Linear(hidden, num_classes)),
        ]))
        _kaiming(self)


def _kaiming(model: nn.Module) -> None:
    # He initialisation: what lets a 16-layer ReLU net without normalisation train from scratch
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


register_model("alexnet_cifar")(AlexNetCifar)
register_model("vgg_cifar")(VggCifar)



# --- The classifiers of the self-introspection chapter (Pardo et al., Table 1): ELU units. ---


class EluMlp(nn.Sequential):
    """Net1: ``depth`` dense ELU layers of ``hidden`` units, then ``num_classes`` outputs.

    ``forward`` returns logits; the paper's sigmoid output is ``torch.sigmoid(logits)``, applied by
    the MSE loss (``TrainConfig(loss="mse_sigmoid")``) and by everything that reads the output.
    Hidden layer ``i`` is the block ``hidden{i}`` (Linear, ELU, Dropout): its output is the
    paper's ``h_i`` (dropout is the identity in eval mode). ``hidden_layers`` lists them.
    """

    def __init__(self, in_features: int = 784, hidden: int = 200, depth: int = 12, num_classes: int = 10,
                 dropout: float = 0.1):
        head, hidden_layers = _elu_dense_head("hidden", in_features, hidden, depth, num_classes, dropout)
        super().__init__(OrderedDict([("flatten", nn.Flatten())] + head))
        self.hidden_layers = hidden_layers
        _kaiming_elu(self)


class AllConvElu(nn.Sequential):
    """Net2: the all-convolutional CIFAR-10 net of Table 1 with dense layers on top.

    Two 3 x 3 convolutions of ``c1`` filters, a third with stride 2, the same with ``c2`` filters,
    a 1 x 1 convolution of ``c2`` filters, global average pooling, ``depth`` dense ELU layers of
    ``dense`` units, ``num_classes`` outputs (logits; sigmoid as in :class:`EluMlp`). Dropout
    follows every hidden layer (the paper: "for all layers", keep probability 0.8).
    ``width`` scales ``c1 = 96`` and ``c2 = 192`` (the quick profile's CPU budget).
    ``hidden_layers`` are the dense blocks ``dense0`` ... , the activations the paper encodes.
    """

    def __init__(self, width: float = 1.0, dense: int = 512, depth: int = 3, num_classes: int = 10,
                 dropout: float = 0.2):
        c1, c2 = max(1, round(96 * width)), max(1, round(192 * width))

        def conv(c_in, c_out, k=3, stride=1):
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2), nn.ELU(), nn.Dropout(dropout))

        blocks = [("conv1", conv(3, c1)), ("conv2", conv(c1, c1)), ("conv3", conv(c1, c1, stride=2)),
                  ("conv4", conv(c1, c2)), ("conv5", conv(c2, c2)), ("conv6", conv(c2, c2, stride=2)),
                  ("conv7", conv(c2, c2, k=1)), ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        head, hidden_layers = _elu_dense_head("dense", c2, dense, depth, num_classes, dropout)
        super().__init__(OrderedDict(blocks + head))
        self.hidden_layers = hidden_layers
        _kaiming_elu(self)


def _elu_dense_head(prefix: str, width: int, hidden: int, depth: int, num_classes: int, dropout: float):
    """``depth`` blocks ``<prefix>0`` ... (Linear, ELU, Dropout) and the ``output`` Linear, as
    (name, module) pairs, with the names of the hidden blocks."""
    blocks = []
    for i in range(depth):
        blocks.append((f"{prefix}{i}", nn.Sequential(nn.Linear(width, hidden), nn.ELU(), nn.Dropout(dropout))))
        width = hidden
    blocks.append(("output", nn.Linear(width, num_classes)))
    return blocks, tuple(f"{prefix}{i}" for i in range(depth))


def _kaiming_elu(model: nn.Module) -> None:
    # PyTorch's default init shrinks the signal over 12 ELU layers (Net1 then barely trains); He
    # init keeps it, but would start the sigmoid outputs saturated, where the MSE gradient vanishes:
    # the output layer starts near zero instead (all outputs 1/2).
    _kaiming(model)
    nn.init.normal_(model.output.weight, std=0.01)


register_model("elu_mlp")(EluMlp)
register_model("allconv_elu")(AllConvElu)

# --- torchvision's ImageNet models, with weights from the user's torch cache only. ---

IMAGENET_MODELS = {"alexnet": "AlexNet_Weights", "vgg16": "VGG16_Weights"}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not in the local torch cache (and are not downloaded)."""


def imagenet_weights_path(arch: str):
    """Where torchvision keeps ``arch``'s ImageNet weights (``$TORCH_HOME/hub/checkpoints``)."""
    import os
    from pathlib import Path

    import torch
    import torchvision.models as tvm

    if arch not in IMAGENET_MODELS:
        raise KeyError(f"unknown ImageNet model {arch!r}; known: {', '.join(IMAGENET_MODELS)}")
    url = getattr(tvm, IMAGENET_MODELS[arch]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_model(arch: str, pretrained: bool = True, download: bool = False) -> nn.Module:
    """torchvision's ``alexnet`` or ``vgg16``; with ``pretrained``, its IMAGENET1K_V1 weights, read
    from the torch cache. Without them (and without ``download``) raises MissingWeightsError, which
    names the file expected and how to get it; nothing falls back to random weights."""
    import torch
    import torchvision.models as tvm

    path = imagenet_weights_path(arch)
    model = getattr(tvm, arch)(weights=None)
    if not pretrained:
        return model
    if not path.is_file():
        if not download:
            raise MissingWeightsError(
                f"no ImageNet weights for {arch}: {path} does not exist. On a machine with internet, "
                f"torchvision.models.{arch}(weights='IMAGENET1K_V1') downloads them there (or copy the file in).")
        getattr(tvm, arch)(weights="IMAGENET1K_V1")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
