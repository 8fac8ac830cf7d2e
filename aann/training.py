"""Minibatch training and batched evaluation on data held as tensors on the device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import Split
from .runtime import generator
from .ternary import apply_masks


def train_epoch(model: nn.Module, data: Split, optimizer: torch.optim.Optimizer, batch_size: int,
                seed: int, scheduler=None, progress: tqdm | None = None) -> float:
    """One pass over ``data`` in a seeded random order; returns the mean cross-entropy.

    After every step the pruned latent weights are zeroed again, because Adam's momentum would
    otherwise keep moving them (harmless for the output, confusing for anyone inspecting ``weight``).
    """
    model.train()
    order = torch.randperm(len(data), generator=generator(seed)).to(data.y.device)
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:  # stepped per batch
            scheduler.step()
        apply_masks(model)
        total += loss.item() * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(len(idx))
    return total / count


@torch.inference_mode()
def logits(model: nn.Module, data: Split, batch_size: int = 2000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(data.x[i:i + batch_size]) for i in range(0, len(data), batch_size)])


@torch.inference_mode()
def accuracy(model: nn.Module, data: Split, batch_size: int = 2000) -> float:
    """Top-1 accuracy, a fraction in [0, 1] (ties in the outputs go to the lowest class index)."""
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        correct += (model(data.x[i:i + batch_size]).argmax(1) == data.y[i:i + batch_size]).sum().item()
    return correct / len(data)
