"""Minibatch training and batched evaluation on data held as tensors on the device."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import cache
from .data import Split
from .runtime import generator, seed_everything
from .ternary import apply_masks


def train_epoch(model: nn.Module, data: Split, optimizer: torch.optim.Optimizer, batch_size: int,
                seed: int, scheduler=None, progress: tqdm | None = None, augment=None) -> float:
    """One pass over ``data`` in a seeded random order; returns the mean cross-entropy.
    ``augment(x, generator)`` transforms each batch (a CPU generator seeded from ``seed``).

    After every step the pruned latent weights are zeroed again, because Adam's momentum would
    otherwise keep moving them (harmless for the output, confusing for anyone inspecting ``weight``).
    """
    model.train()
    gen = generator(seed)
    order = torch.randperm(len(data), generator=gen).to(data.y.device)
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = order[start:start + batch_size]
        x = data.x[idx] if augment is None else augment(data.x[idx], gen)
        loss = F.cross_entropy(model(x), data.y[idx])
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


def flip_and_shift(x: torch.Tensor, gen: torch.Generator, shift: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation, per image: a horizontal flip with probability 1/2 and a
    translation by up to ``shift`` pixels each way (zero padding), drawn from ``gen``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, n), generator=gen))
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (shift,) * 4)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].to(x.device)  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].to(x.device)  # (n, 1, w)
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


@dataclass
class TrainConfig:
    """An ordinary classifier's training: AdamW, learning rate cosine-annealed to 0 per batch."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 128
    augment: bool = False  # flip_and_shift (for CIFAR)


def train_classifier(data: dict[str, Split], config: TrainConfig, seed: int = 0, device=None,
                     use_cache: bool = True, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``config.model`` on ``data["train"]``; ``data["val"]`` is measured after each epoch
    (nothing is selected on it). Cached under a hash of the configuration, the seed and the
    training data. Returns the model (eval mode) and ``{"val_acc", "history": {"val_acc": [...]}}``."""
    from .models import get_model

    train, val = data["train"], data["val"]
    device = device or train.x.device
    key = {"algorithm": "train_classifier", **asdict(config), "seed": seed, "train": train.fingerprint()}
    seed_everything(seed)
    model = get_model(config.model, **config.model_kwargs).to(device)
    hit = cache.load(key) if use_cache else None
    if hit is not None:
        model.load_state_dict(hit[0])
        return model.eval(), hit[1]
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(train) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    history = {"val_acc": []}
    bar = tqdm(total=config.epochs * len(train), desc=f"train {config.model} seed {seed}", unit="img",
               unit_scale=True, disable=not progress, mininterval=5)
    for e in range(config.epochs):
        train_epoch(model, train, opt, config.batch_size, seed * 1000 + e, sched, bar,
                    flip_and_shift if config.augment else None)
        history["val_acc"].append(accuracy(model, val))
    bar.close()
    meta = {"val_acc": history["val_acc"][-1] if history["val_acc"] else accuracy(model, val), "history": history}
    if use_cache:
        cache.save(key, model.state_dict(), meta)
    return model.eval(), meta
