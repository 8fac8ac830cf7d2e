"""The pieces of a staged network the evaluator computes with: a layer's linear map with other
weights, a stage's activation and pooling as a function, and the loss it scores neighbours by."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..pooling import is_plain_2x2, max_pool_2x2_values

__all__ = []


def _layer_op(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """The layer's linear map with another weight (conv or linear)."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, weight, bias)


def _post_steps(post: nn.Module) -> tuple:
    """A stage's ``post`` as steps: ``("pool",)`` (plain 2x2 max-pooling), ``("clamp", lo, hi,
    in_place)``, ``("flatten",)``, or a module to call as it is (anything else).

    HardTanh followed by max-pooling runs as pooling, then the clamp, in place: a clamp is
    monotone, so ``max(clamp(z)) == clamp(max(z))`` exactly (no arithmetic, only a choice), and
    the clamp then touches a quarter of the elements."""
    modules = list(post) if isinstance(post, nn.Sequential) else [post]
    steps, i = [], 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, nn.Hardtanh) and i + 1 < len(modules) and is_plain_2x2(modules[i + 1]):
            steps += [("pool",), ("clamp", m.min_val, m.max_val, True)]  # on the pool's fresh output
            i += 2
            continue
        if is_plain_2x2(m):
            steps.append(("pool",))
        elif isinstance(m, nn.Hardtanh):
            steps.append(("clamp", m.min_val, m.max_val, False))  # its input may be a cached tensor
        elif isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            steps.append(("flatten",))
        elif not isinstance(m, nn.Identity):
            steps.append(m)
        i += 1
    return tuple(steps)


def _run_steps(steps: tuple, x: torch.Tensor) -> torch.Tensor:
    for step in steps:
        if isinstance(step, nn.Module):
            x = step(x)
        elif step[0] == "pool":
            x = max_pool_2x2_values(x)
        elif step[0] == "clamp":
            x = x.clamp_(step[1], step[2]) if step[3] else x.clamp(step[1], step[2])
        else:
            x = x.flatten(1)
    return x


def _evaluation_post(post: nn.Module):
    """A stage's ``post`` as a function of its pre-activation (see :func:`_post_steps`)."""
    steps = _post_steps(post)
    return lambda x: _run_steps(steps, x)


def _shrinks(post: nn.Module) -> bool:
    """Whether a stage's ``post`` moves no output by more than its inputs move (sup norm): HardTanh,
    ReLU, max-pooling, flattening."""
    modules = list(post) if isinstance(post, nn.Sequential) else [post]
    return all(isinstance(m, (nn.Hardtanh, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Identity)) for m in modules)


def _check_temperature(t) -> None:
    if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ValueError(f"the loss temperature must be a finite number > 0, got {t!r}")


def _cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""$\sum_i -\log \mathrm{softmax}(z_i / T)_{y_i}$ over the images of ``logits`` [B, n, classes]: [B]."""
    z = logits / temperature
    return (torch.logsumexp(z, -1) - z.gather(-1, y.view(1, -1, 1).expand(len(z), -1, 1)).squeeze(-1)).sum(-1)
