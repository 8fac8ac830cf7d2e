"""Targeted iterative FGSM (Goodfellow et al.; as in Pardo et al., section 3.5), keeping every step.

Each step moves the input against the sign of the gradient of the loss towards the target class,

    x <- clip(x - eps * sign(grad_x E_adv(x)), 0, 1),    E_adv = 1/2 ||y_target - y_hat||^2,

so that the whole path through activation space can be drawn (the paper's Fig. 6: 100 steps,
eps = 0.01, inputs in [0, 1]).
"""

from __future__ import annotations

import torch
from torch import nn

from .training import LOSSES

__all__ = ["targeted_fgsm"]


def targeted_fgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float = 0.01, steps: int = 100,
                  loss: str = "mse_sigmoid", clip: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """The trajectory of inputs, (steps + 1) x N x ..., starting with ``x`` itself; image n is pushed
    towards class ``target[n]``. ``loss`` is a key of ``training.LOSSES`` (the classifier's own)."""
    if eps <= 0 or steps < 1:
        raise ValueError(f"need eps > 0 and steps >= 1, got eps={eps}, steps={steps}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if len(target) != len(x):
        raise ValueError(f"{len(x)} inputs but {len(target)} targets")
    model.eval()
    path = [x.detach().clone()]
    adv = x.detach().clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        # summed, not averaged: each image's gradient is then its own loss's (the sign is the same)
        grad, = torch.autograd.grad(LOSSES[loss](model(adv), target) * len(adv), adv)
        adv = adv.detach() - eps * grad.sign()
        if clip is not None:
            adv = adv.clamp(*clip)
        path.append(adv)
    return torch.stack(path)
