"""Ensembles of the members of a SENSE family: the best distinct members and their vote."""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from .data import Split
from .neighbours import apply_swap
from .sense import SenseResult
from .ternary import sparse_layers
from .training import logits

__all__ = ["ensemble_accuracy", "best_members"]


@torch.no_grad()
def ensemble_accuracy(members: list[nn.Module], data: Split, how: str = "vote") -> float:
    """Accuracy of an ensemble of networks: majority ``"vote"`` of their predictions (ties to the
    lowest class) or the argmax of their ``"mean"`` softmax probabilities."""
    if how not in ("vote", "mean") or not members:
        raise ValueError(f"how must be 'vote' or 'mean' and members non-empty, got how={how!r}, {len(members)} members")
    outs = torch.stack([logits(m, data) for m in members])  # [K, N, C]
    if how == "mean":
        pred = outs.softmax(-1).mean(0).argmax(-1)
    else:
        votes = torch.nn.functional.one_hot(outs.argmax(-1), outs.shape[-1]).sum(0)
        pred = votes.argmax(-1)
    return (pred == data.y).double().mean().item()


def best_members(result: SenseResult, k: int) -> list[int]:
    """The ``k`` family members with the highest selection accuracy, distinct as networks (with
    ties accepted the search can swap a weight and swap it back; such a repeat is skipped)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    net = copy.deepcopy(result.initial)
    keys = [_ternary_key(net)]
    for layer, src, dst in result.path:  # one walk along the path, hashing every member
        apply_swap(net, layer, src, dst)
        keys.append(_ternary_key(net))
    order = sorted(range(len(result.member_val)), key=lambda i: (-result.member_val[i], i))
    chosen, seen = [], set()
    for i in order:
        if keys[i] not in seen:
            seen.add(keys[i])
            chosen.append(i)
        if len(chosen) == k:
            break
    return chosen


def _ternary_key(net: nn.Module) -> str:
    h = hashlib.sha256()
    for layer in sparse_layers(net).values():
        h.update(layer.ternary_values().cpu().to(torch.int8).numpy().tobytes())
    return h.hexdigest()
