"""The fault model: which weights of one layer a fault changes and how, drawn from the fault's own
seed, applied in place and undone exactly (see the package's docstring)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..runtime import derived_seed
from ..ternary import SparseTernaryMixin, UnknownLayerError

__all__ = ["TREATMENTS", "KNOCKOUTS", "Fault", "check_amount", "faults_grid", "weight_layers", "layer_name", "weight_layer",
           "layer_weights", "perturbed_weights", "fault_weights", "perturb"]

TREATMENTS = ("synapse_knockout", "node_knockout", "gaussian")
KNOCKOUTS = ("synapse_knockout", "node_knockout")


@dataclass(frozen=True)
class Fault:
    """One perturbation: ``amount`` is a fraction in [0, 1] for knockouts, a magnitude
    $m \\ge 0$ (in units of the layer's $\\sigma$) for ``gaussian``."""

    layer: str
    treatment: str
    amount: float
    repeat: int = 0

    def __post_init__(self):
        check_amount(self.treatment, self.amount)

    def seed(self, base: int = 0) -> int:
        """The fault's own seed: a hash of what it is, so a sweep's order never changes its draws."""
        return derived_seed(base, self.layer, self.treatment, round(float(self.amount), 9), self.repeat, bits=60)

    @property
    def is_identity(self) -> bool:
        return float(self.amount) == 0.0


def check_amount(treatment: str, amount: float) -> float:
    if treatment not in TREATMENTS:
        raise ValueError(f"unknown treatment {treatment!r}; allowed: {', '.join(TREATMENTS)}")
    amount = float(amount)
    if treatment in KNOCKOUTS and not 0.0 <= amount <= 1.0:
        raise ValueError(f"{treatment}: the fraction must be in [0, 1], got {amount}")
    if treatment == "gaussian" and not (amount >= 0.0 and np.isfinite(amount)):
        raise ValueError(f"gaussian: the magnitude must be a finite number >= 0, got {amount}")
    return amount


def faults_grid(layers, treatments, amounts: dict, repeats: int) -> list[Fault]:
    """Every (layer, treatment, amount, repeat); ``amounts`` maps each treatment to its grid."""
    return [Fault(layer, t, float(a), r) for layer in layers for t in treatments for a in amounts[t]
            for r in range(repeats)]


# ---------------------------------------------------------------------------------------------
# Layers and their weights


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Conv2d and Linear layers of ``model`` by name, in the order they were registered
    (input side first for every sequential net)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def layer_name(model: nn.Module, name: str) -> str:
    """The module name of a Conv2d or Linear layer given by its module name or, for a sparse
    ternary layer, by the paper's name that the neighbours and SENSE use (``1.0`` for ``layer1.0``;
    :func:`aann.ternary.sparse_layers`). An unknown name raises
    :class:`~aann.ternary.UnknownLayerError` listing the allowed ones."""
    layers = weight_layers(model)
    if name in layers:
        return name
    aliases = {paper: module for paper, module in ((n.removeprefix("layer"), n) for n in layers)
               if isinstance(layers[module], SparseTernaryMixin)}
    if name in aliases:
        return aliases[name]
    raise UnknownLayerError(f"unknown layer {name!r}; the Conv2d/Linear layers of this model are: {', '.join(layers)}")


def weight_layer(model: nn.Module, name: str) -> nn.Module:
    """One Conv2d or Linear layer of ``model`` by its name (see :func:`layer_name`)."""
    return weight_layers(model)[layer_name(model, name)]


@torch.no_grad()
def layer_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias the layer computes with (for a sparse ternary layer, $\\alpha t$)."""
    w = layer.effective_weight() if isinstance(layer, SparseTernaryMixin) else layer.weight
    return w.detach(), (None if layer.bias is None else layer.bias.detach())


def _std(t: torch.Tensor | None) -> float:
    # population standard deviation, as numpy's std (what the paper's Table 1 reports)
    return 0.0 if t is None or t.numel() < 2 else float(t.double().std(unbiased=False))


def perturbed_weights(weight: torch.Tensor, bias: torch.Tensor | None, treatment: str, amount: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New tensors: ``weight`` and ``bias`` after the treatment (the inputs are not modified).

    Draws are made on the CPU (``generator`` is a CPU generator) so that a fault gives the same
    perturbation on every device.
    """
    amount = check_amount(treatment, amount)
    w = weight.detach().cpu().clone()
    b = None if bias is None else bias.detach().cpu().clone()
    if treatment == "synapse_knockout":
        for t in (w, b):
            if t is not None:
                k = round(amount * t.numel())
                t.view(-1)[torch.randperm(t.numel(), generator=generator)[:k]] = 0
    elif treatment == "node_knockout":
        units = torch.randperm(w.shape[0], generator=generator)[:round(amount * w.shape[0])]
        w[units] = 0
        if b is not None:
            b[units] = 0
    else:  # gaussian, sigma of the unperturbed weights and biases separately
        sw, sb = _std(weight), _std(bias)
        w += torch.randn(w.shape, generator=generator, dtype=w.dtype) * (amount * sw)
        if b is not None:
            b += torch.randn(b.shape, generator=generator, dtype=b.dtype) * (amount * sb)
    return w.to(weight.device), (None if b is None else b.to(bias.device))


def fault_weights(model: nn.Module, fault: Fault, seed: int = 0):
    layer = weight_layer(model, fault.layer)
    w, b = layer_weights(layer)
    return perturbed_weights(w, b, fault.treatment, fault.amount, torch.Generator().manual_seed(fault.seed(seed)))


@contextmanager
def perturb(model: nn.Module, fault: Fault, seed: int = 0):
    """Apply ``fault`` to ``model`` in place for the ``with`` block, then undo it exactly: every
    parameter and buffer of the layer is copied back, so the model is bit-identical to before."""
    layer = weight_layer(model, fault.layer)
    w, b = fault_weights(model, fault, seed)
    saved = {k: v.detach().clone() for k, v in layer.state_dict(keep_vars=True).items()}
    try:
        with torch.no_grad():
            if isinstance(layer, SparseTernaryMixin):  # compute with the new weight, in dense mode
                layer.is_ternary.fill_(False)
                layer.mask.fill_(True)
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
        yield model
    finally:
        with torch.no_grad():
            for k, v in layer.state_dict(keep_vars=True).items():
                v.copy_(saved[k])
