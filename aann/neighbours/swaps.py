"""Bit-swaps of a sparse ternary layer: the neighbourhood, sampled or enumerated, and a swap applied
to a network and undone."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..ternary import SparseTernaryMixin, sparse_layer

__all__ = ["Swaps", "neighbourhood_size", "sample_neighbours", "iter_neighbours", "apply_swap", "undo_swap"]


@dataclass
class Swaps:
    """A batch of bit-swaps of one layer: flat weight indices ``src`` (nonzero) and ``dst`` (zero)."""

    layer: str
    src: torch.Tensor  # int64, flat indices into the layer's weight
    dst: torch.Tensor

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i) -> "Swaps":
        if isinstance(i, int):
            i = slice(i, i + 1)
        return Swaps(self.layer, self.src[i], self.dst[i])


def _positions(layer: SparseTernaryMixin) -> tuple[torch.Tensor, torch.Tensor]:
    t = layer.ternary_values().flatten().cpu()
    return (t != 0).nonzero().squeeze(1), (t == 0).nonzero().squeeze(1)


def _swappable(model: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    nonzero, zero = _positions(sparse_layer(model, name))
    if len(nonzero) == 0 or len(zero) == 0:
        raise ValueError(
            f"layer {name} has {len(nonzero)} nonzero and {len(zero)} zero weights; a bit-swap needs "
            "at least one of each (sparsity strictly between 0 and 100 %)"
        )
    return nonzero, zero


def neighbourhood_size(model: nn.Module, layer: str) -> int:
    """The number of first neighbours through ``layer``: nonzero weights times zero weights."""
    nonzero, zero = _swappable(model, layer)
    return len(nonzero) * len(zero)


def sample_neighbours(model: nn.Module, layer: str, n: int, seed: int = 0) -> Swaps:
    """``n`` distinct first neighbours through ``layer``, drawn uniformly without replacement."""
    nonzero, zero = _swappable(model, layer)
    size = len(nonzero) * len(zero)
    if not 0 < n <= size:
        raise ValueError(f"layer {layer} has {size} first neighbours; asked for {n} (allowed: 1 to {size})")
    # random.sample draws from a range lazily, without materialising all n_nonzero * n_zero pairs
    k = torch.tensor(random.Random(seed).sample(range(size), n), dtype=torch.long)
    return Swaps(layer, nonzero[k // len(zero)], zero[k % len(zero)])


def iter_neighbours(model: nn.Module, layer: str, batch_size: int = 4096) -> Iterator[Swaps]:
    """Every first neighbour through ``layer``, lazily, ``batch_size`` at a time (nonzero-major)."""
    nonzero, zero = _swappable(model, layer)
    size = len(nonzero) * len(zero)
    for start in range(0, size, batch_size):
        k = torch.arange(start, min(start + batch_size, size))
        yield Swaps(layer, nonzero[k // len(zero)], zero[k % len(zero)])


@torch.no_grad()
def apply_swap(model: nn.Module, layer: str, src: int, dst: int) -> tuple[float, float]:
    """Move the nonzero weight ``src`` of ``layer`` to the zero position ``dst``; returns what
    ``undo_swap`` needs to restore the network bit for bit."""
    lay = sparse_layer(model, layer)
    w, m = lay.weight.view(-1), lay.mask.view(-1)
    src, dst = int(src), int(dst)
    if not bool(m[src]) or bool(m[dst]):
        raise ValueError(f"layer {layer}: a swap needs a nonzero src and a zero dst (src={src}, dst={dst})")
    saved = (w[src].item(), w[dst].item())
    w[dst], w[src] = w[src].clone(), 0.0
    m[dst], m[src] = True, False
    return saved


@torch.no_grad()
def undo_swap(model: nn.Module, layer: str, src: int, dst: int, saved: tuple[float, float]) -> None:
    lay = sparse_layer(model, layer)
    w, m = lay.weight.view(-1), lay.mask.view(-1)
    w[int(src)], w[int(dst)] = saved
    m[int(src)], m[int(dst)] = True, False
