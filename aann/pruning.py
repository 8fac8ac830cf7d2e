r"""Magnitude pruning and the gradual schedule of p-SIREN step 2.

Pruning to sparsity $p$ keeps the $n - \mathrm{round}(n p / 100)$ largest $|w|$ and masks the rest.
Already-pruned weights always rank lowest, so masks only ever grow along a schedule. Ties in $|w|$
are broken by position (a stable sort), so the count of zeros is exact and repeatable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .ternary import sparse_layer, sparse_layers

__all__ = ["SCOPES", "check_sparsity", "prune_to", "gradual_schedule"]

SCOPES = ("layer", "global")


def check_sparsity(p: float) -> float:
    """A sparsity in percent: 0 <= p < 100 (100 % would leave no network)."""
    p = float(p)
    if not (0.0 <= p < 100.0) or math.isnan(p):
        raise ValueError(f"sparsity must be a percentage in [0, 100), got {p}")
    return p


def _keep_top(scores: torch.Tensor, n_zero: int) -> torch.Tensor:
    """Boolean mask keeping all but the ``n_zero`` lowest scores (stable on ties)."""
    flat = scores.flatten()
    mask = torch.ones_like(flat, dtype=torch.bool)
    if n_zero > 0:
        order = torch.sort(flat, stable=True).indices
        mask[order[:n_zero]] = False
    return mask.view_as(scores)


@torch.no_grad()
def prune_to(model: nn.Module, sparsity: float, scope: str = "global", layers=None) -> None:
    r"""Magnitude-prune ``model``'s sparse layers to ``sparsity`` percent zeros.

    ``scope="global"`` (the paper's $\|S(w)\|_0 = N p / 100$ over all $N$ weights): one ranking
    over all the named layers together, exactly ``round(N p / 100)`` zeros in total; layers with
    small weights (wide fan-in, like ``fc``) lose more. ``scope="layer"``: every layer gets exactly
    ``round(n_l p / 100)`` zeros. ``layers``: paper names of the layers to prune (default: all).
    """
    p = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    chosen = {n: sparse_layer(model, n) for n in layers} if layers is not None else sparse_layers(model)
    # Pruned weights score -1 so they stay pruned; the rest score |w|.
    scores = {n: torch.where(l.mask, l.weight.abs(), torch.full_like(l.weight, -1.0)) for n, l in chosen.items()}
    if scope == "layer":
        for name, layer in chosen.items():
            layer.mask.copy_(_keep_top(scores[name], round(layer.weight.numel() * p / 100)))
    else:
        flat = torch.cat([s.flatten() for s in scores.values()])
        keep = _keep_top(flat, round(flat.numel() * p / 100))
        offset = 0
        for name, layer in chosen.items():
            n = layer.weight.numel()
            layer.mask.copy_(keep[offset:offset + n].view_as(layer.mask))
            offset += n
    for name, layer in chosen.items():
        if not layer.mask.any():  # a layer without a single connection cuts the network in two
            raise ValueError(
                f"pruning to {p} % ({scope} scope) would remove every weight of layer {name}; "
                "train longer before pruning, lower the sparsity, or use scope='layer'"
            )
        layer.apply_mask_()


def gradual_schedule(levels, n2: int) -> list[list[float]]:
    r"""Sparsities to prune to at the end of each of the ``n2`` pruning epochs.

    The rate is constant, $r = p_{max} / n_2$ percent per epoch (the paper: 2-3 % per epoch), so
    level $p$ is reached after $p / r$ epochs exactly as a run aimed at $p$ alone would reach it.
    Entry $k$ lists, in increasing order, the requested levels passed during epoch $k$ followed by
    the epoch's own target $k r$; a run forks each level off this one trajectory.
    """
    levels = sorted({check_sparsity(p) for p in levels})
    if n2 < 1:
        raise ValueError(f"n2 (pruning epochs) must be >= 1, got {n2}")
    rate = levels[-1] / n2
    schedule, done = [], {0.0}
    for k in range(1, n2 + 1):
        lo, hi = (k - 1) * rate, k * rate if k < n2 else levels[-1]
        stops = [p for p in levels if lo < p <= hi and p not in done] + [hi]
        done.update(stops)
        schedule.append(sorted(set(stops)))
    return schedule
