r"""Sparse ternary layers: weights in $\{-1, 0, +1\}$ times a learned scale (per layer or per channel).

A layer holds a real-valued *latent* weight $w$, a boolean mask $m$ (False = pruned, a 0 weight)
and a scale $\alpha$. It runs in one of two modes:

- dense: $W = w \odot m$ (p-SIREN steps 1-3: ordinary training, then pruning with a fixed mask);
- ternary: $W = \alpha \, t$ with $t = \operatorname{sign}(w) \odot m \in \{-1, 0, +1\}$ (step 4).

In ternary mode the gradient reaches $w$ through the straight-through estimator
$\partial t / \partial w := m$, so training moves latent weights across zero and flips signs, while
the mask, hence the sparsity, stays fixed. $\alpha$ is learned; it only rescales a layer's
pre-activations before the HardTanh clamp, so the architecture, the counts of -1/0/+1 and every
bit-swap neighbour are those of the ternary $t$ alone. Nothing keeps $\alpha$ positive: folding a
batch norm with a negative gain into it (``aann.models.fold_batch_norm``) flips a channel's sign,
which changes no count and no neighbour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SCALES", "SparseTernaryMixin", "SparseTernaryConv2d", "SparseTernaryLinear", "sparse_layers",
           "UnknownLayerError", "sparse_layer", "ternarize", "apply_masks", "value_counts",
           "check_sparse_ternary"]


SCALES = ("layer", "channel")


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) := +1 (so an unpruned weight is never a 0), identity gradient."""

    @staticmethod
    def forward(ctx, w):
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class SparseTernaryMixin:
    """Mask, scale and mode for a Conv2d or Linear; see the module docstring."""

    def _init_sparse_ternary(self, scale: str) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        self.register_buffer("is_ternary", torch.tensor(False))
        # one scale per layer, or one per output channel (unit): the weights stay ternary either way
        shape = () if scale == "layer" else (self.weight.shape[0],) + (1,) * (self.weight.dim() - 1)
        self.scale = nn.Parameter(torch.ones(shape, dtype=self.weight.dtype))

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer computes with (differentiable)."""
        if bool(self.is_ternary):
            return self.scale * _SignSTE.apply(self.weight) * self.mask
        return self.weight * self.mask

    @torch.no_grad()
    def ternary_values(self) -> torch.Tensor:
        """$t \\in \\{-1, 0, +1\\}$ as int8 (in dense mode: the signs the layer would ternarize to)."""
        t = torch.where(self.weight >= 0, 1, -1).to(torch.int8)
        return t * self.mask.to(torch.int8)

    @torch.no_grad()
    def ternarize_(self) -> None:
        r"""Switch to ternary mode; $\alpha$ starts at the mean $|w|$ of the kept weights, so the
        layer's output scale barely changes at the switch."""
        kept = (self.weight.abs() * self.mask).flatten(1).sum(1)  # per output channel
        count = self.mask.flatten(1).sum(1)
        if self.scale.dim() == 0:
            self.scale.fill_(kept.sum().item() / count.sum().item() if count.sum() else 1.0)
        else:
            per = torch.where(count > 0, kept / count.clamp(min=1), torch.ones_like(kept))
            self.scale.copy_(per.view_as(self.scale))
        self.is_ternary.fill_(True)

    @torch.no_grad()
    def apply_mask_(self) -> None:
        """Zero the latent weights that are pruned (an optimizer's momentum can move them)."""
        self.weight.mul_(self.mask)

    @property
    def sparsity(self) -> float:
        """Fraction of pruned weights, in [0, 1]."""
        return 1.0 - self.mask.float().mean().item()


class SparseTernaryConv2d(SparseTernaryMixin, nn.Conv2d):
    def __init__(self, *args, scale: str = "layer", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sparse_ternary(scale)

    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SparseTernaryLinear(SparseTernaryMixin, nn.Linear):
    def __init__(self, *args, scale: str = "layer", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sparse_ternary(scale)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


def sparse_layers(model: nn.Module) -> dict[str, SparseTernaryMixin]:
    """The model's sparse ternary layers by the paper's names (``layer1.0`` is called ``1.0``)."""
    return {
        name.removeprefix("layer"): module
        for name, module in model.named_modules()
        if isinstance(module, SparseTernaryMixin)
    }


class UnknownLayerError(KeyError, ValueError):
    """A layer name the model does not have (both a KeyError and a ValueError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def sparse_layer(model: nn.Module, name: str) -> SparseTernaryMixin:
    """One sparse ternary layer by its paper name; a clear error for an unknown name."""
    layers = sparse_layers(model)
    if name not in layers:
        raise UnknownLayerError(f"unknown layer {name!r}; this model's layers are {', '.join(layers)}")
    return layers[name]


def ternarize(model: nn.Module) -> None:
    """p-SIREN step 4's switch: every sparse layer to ternary mode."""
    for layer in sparse_layers(model).values():
        layer.ternarize_()


def apply_masks(model: nn.Module) -> None:
    for layer in sparse_layers(model).values():
        layer.apply_mask_()


def value_counts(model: nn.Module) -> dict[str, dict[int, int]]:
    """Per layer, how many weights are -1, 0 and +1: the network's *family*."""
    out = {}
    for name, layer in sparse_layers(model).items():
        t = layer.ternary_values()
        out[name] = {v: int((t == v).sum()) for v in (-1, 0, 1)}
    return out


def check_sparse_ternary(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, float]:
    """Assert the invariants of a p-SIREN network and return the per-layer sparsity (in %).

    - every layer is in ternary mode and computes with $\\alpha t$, $t \\in \\{-1,0,+1\\}$;
    - the zeros of $t$ are exactly the pruned weights;
    - the sparsity is exactly ``round(n * p / 100)`` zeros over all sparse layers together (scope
      ``global``, p-SIREN's default) or in every layer (scope ``layer``).
    """
    per_layer, zeros, total = {}, 0, 0
    for name, layer in sparse_layers(model).items():
        if not bool(layer.is_ternary):
            raise AssertionError(f"layer {name} is not ternary")
        t = layer.ternary_values()
        w = layer.effective_weight().detach()
        if not torch.equal(w, layer.scale.detach() * t.to(w.dtype)):
            raise AssertionError(f"layer {name} does not compute with scale * ternary values")
        if not torch.equal(t == 0, ~layer.mask):
            raise AssertionError(f"layer {name}: the zeros are not exactly the pruned weights")
        n, z = t.numel(), int((t == 0).sum())
        if scope == "layer" and z != round(n * sparsity / 100):
            raise AssertionError(f"layer {name}: {z} zeros of {n}, expected {round(n * sparsity / 100)}")
        per_layer[name] = 100.0 * z / n
        zeros, total = zeros + z, total + n
    if scope == "global" and zeros != round(total * sparsity / 100):
        raise AssertionError(f"{zeros} zeros of {total}, expected {round(total * sparsity / 100)}")
    return per_layer
