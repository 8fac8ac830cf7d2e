"""Minibatch training and batched evaluation on data held as tensors on the device."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import cache
from .data import Split
from .runtime import generator, seed_everything
from .ternary import apply_masks

__all__ = ["mse_sigmoid", "classifier_error", "bce_sigmoid", "LOSSES", "train_epoch", "eval_batch_size",
           "logits", "accuracy", "random_shift", "flip_and_shift", "input_noise", "triangular_lr",
           "TrainConfig", "training_key", "train_classifier"]


def mse_sigmoid(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of Pardo et al.'s sigmoid-output classifiers: ``classifier_error`` averaged over the batch."""
    return classifier_error(logits, y).mean()


def classifier_error(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample e = 1/2 ||y - y_hat||^2 with y one-hot and y_hat = sigmoid(logits): the
    classifier's error that the self-introspection estimator learns to predict."""
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return 0.5 * (target - torch.sigmoid(logits)).pow(2).sum(1)


def bce_sigmoid(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-vs-all binary cross-entropy on sigmoid outputs, summed over classes, averaged over the
    batch. Same outputs as ``mse_sigmoid``, but its gradient (y_hat - y) does not carry MSE's factor
    y_hat (1 - y_hat), which nearly vanishes once every output has sunk towards 0."""
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()


LOSSES: dict[str, Callable] = {"cross_entropy": F.cross_entropy, "mse_sigmoid": mse_sigmoid, "bce_sigmoid": bce_sigmoid}


def train_epoch(model: nn.Module, data: Split, optimizer: torch.optim.Optimizer, batch_size: int,
                seed: int, scheduler=None, progress: tqdm | None = None, augment=None,
                loss_fn: Callable = F.cross_entropy) -> float:
    """One pass over ``data`` in a seeded random order; returns the mean of ``loss_fn(logits, y)``.
    ``augment(x, generator)`` transforms each batch (a CPU generator seeded from ``seed``).

    After every step the pruned latent weights are zeroed again, because Adam's momentum would
    otherwise keep moving them (harmless for the output, confusing for anyone inspecting ``weight``).
    """
    model.train()
    gen = generator(seed)
    order = torch.randperm(len(data), generator=gen).to(data.y.device)
    total, count = torch.zeros((), device=data.y.device), 0
    for start in range(0, len(data), batch_size):
        idx = order[start:start + batch_size]
        x = data.x[idx] if augment is None else augment(data.x[idx], gen)
        loss = loss_fn(model(x), data.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:  # stepped per batch
            scheduler.step()
        apply_masks(model)
        total += loss.detach() * len(idx)  # read once at the end: a .item() per step waits for the GPU
        count += len(idx)
        if progress is not None:
            progress.update(len(idx))
    return total.item() / count


def eval_batch_size(device) -> int:
    """Images per forward pass in evaluation. On a CPU small batches are several times faster per
    image: a batch's activations then stay in the processor's caches (the MNIST net: 151 us per image
    in batches of 2,000, 48 us in batches of 128, one thread; the car net 282 -> 79 us;
    ``results/bench/bench_eval_batch_cpu_*.json``). A GPU wants large ones."""
    return 128 if torch.device(device).type == "cpu" else 2000


@torch.inference_mode()
def logits(model: nn.Module, data: Split, batch_size: int | None = None) -> torch.Tensor:
    """The model's outputs for every image of ``data``, in batches (default: ``eval_batch_size``)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(data.x.device)
    return torch.cat([model(data.x[i:i + batch_size]) for i in range(0, len(data), batch_size)])


@torch.inference_mode()
def accuracy(model: nn.Module, data: Split, batch_size: int | None = None) -> float:
    """Top-1 accuracy, a fraction in [0, 1] (ties in the outputs go to the lowest class index, the
    book's one rule: :mod:`aann.metrics`)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(data.x.device)
    correct = 0
    for i in range(0, len(data), batch_size):
        correct += (model(data.x[i:i + batch_size]).argmax(1) == data.y[i:i + batch_size]).sum().item()
    return correct / len(data)


def random_shift(x: torch.Tensor, gen: torch.Generator, shift: int) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels each way (uniform, zero padding), drawn
    from ``gen``: the usual MNIST augmentation; ``shift=0`` returns ``x``."""
    if shift < 0:
        raise ValueError(f"shift must be a non-negative number of pixels, got {shift}")
    if shift == 0:
        return x
    n, _, h, w = x.shape
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, n), generator=gen))
    padded = F.pad(x, (shift,) * 4)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].to(x.device, non_blocking=True)  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].to(x.device, non_blocking=True)  # (n, 1, w)
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def flip_and_shift(x: torch.Tensor, gen: torch.Generator, shift: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation, per image: a horizontal flip with probability 1/2 and a
    translation by up to ``shift`` pixels each way (zero padding), drawn from ``gen``."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.to(x.device, non_blocking=True)[:, None, None, None], x.flip(-1), x)
    return random_shift(x, gen, shift)


def input_noise(max_sigma: float) -> Callable:
    """Noise injection with domain randomisation (Pardo et al., section 3.4): each batch gets
    additive white Gaussian noise of one standard deviation drawn from U[0, ``max_sigma``]."""

    def add_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        sigma = max_sigma * torch.rand((), generator=gen).item()
        # drawn on the CPU generator (same numbers on any device); non_blocking: the GPU is not waited for
        return x + sigma * torch.randn(x.shape, generator=gen).to(x.device, non_blocking=True)

    return add_noise


def triangular_lr(steps_per_cycle: int, decay: float = 1.0) -> Callable[[int], float]:
    """The triangular cyclic learning rate (Smith 2017) as a multiplier of the peak rate: from 0 up
    to 1 in half a cycle and back to 0, the peak shrinking by ``decay`` each cycle."""

    def factor(step: int) -> float:
        cycle, phase = divmod(step, steps_per_cycle)
        return decay ** cycle * (1.0 - abs(2.0 * (phase + 0.5) / steps_per_cycle - 1.0))

    return factor


@dataclass
class TrainConfig:
    """A classifier's training: AdamW (Adam when ``weight_decay`` is 0) on minibatches.

    ``schedule``: ``"cosine"`` anneals the learning rate to 0 per batch; ``"triangular"`` cycles it
    every ``cycle_epochs`` epochs with the peak decaying by ``lr_decay`` per cycle (Pardo et al.).
    ``loss``: a key of ``LOSSES``. ``augment``: flip_and_shift (CIFAR). ``input_noise``: the
    largest standard deviation of the per-batch input noise (0: none).
    """

    model: str
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 128
    augment: bool = False
    loss: str = "cross_entropy"
    schedule: str = "cosine"
    cycle_epochs: float = 1.0
    lr_decay: float = 1.0
    input_noise: float = 0.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; allowed: {', '.join(LOSSES)}")
        if self.schedule not in ("cosine", "triangular"):
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: cosine, triangular")
        if self.input_noise < 0:
            raise ValueError(f"input_noise is a standard deviation, >= 0; got {self.input_noise}")

    def augmentation(self) -> Callable | None:
        steps = ([flip_and_shift] if self.augment else []) + ([input_noise(self.input_noise)] if self.input_noise else [])
        if not steps:
            return None

        def augment(x, gen):
            for step in steps:
                x = step(x, gen)
            return x

        return augment

    def scheduler(self, optimizer, steps_per_epoch: int):
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(self.epochs * steps_per_epoch, 1))
        per_cycle = max(2, math.ceil(self.cycle_epochs * steps_per_epoch))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, triangular_lr(per_cycle, self.lr_decay))


def training_key(data: dict[str, Split], config: TrainConfig, seed: int) -> dict:
    """The configuration a trained classifier is cached under."""
    return {"algorithm": "train_classifier", **asdict(config), "seed": seed, "train": data["train"].fingerprint()}


def train_classifier(data: dict[str, Split], config: TrainConfig, seed: int = 0, device=None,
                     use_cache: bool = True, progress: bool = True,
                     probe: tuple[dict, Callable[[nn.Module], torch.Tensor]] | None = None) -> tuple[nn.Module, dict]:
    """Train ``config.model`` on ``data["train"]``; ``data["val"]`` is measured after each epoch
    (nothing is selected on it). Cached under a hash of the configuration, the seed and the
    training data. Returns the model (eval mode) and ``{"val_acc", "history": {"val_acc": [...]}}``.

    ``probe = (what, measure)`` watches the training happen: ``measure(model)`` (a tensor) is taken
    before training and after every epoch, kept with the model, and returned stacked (epochs + 1
    first) as ``meta["probe"]``; ``what`` (JSON-able) says what it measures and joins the cache key.

    A stopped training resumes: after each epoch the model, optimizer, scheduler, history (probes
    included) and random state are saved beside the cache entry (``cache.partial_path``), and the
    next call with the same configuration goes on from there, on the same trajectory as an
    uninterrupted run.
    """
    from .models import get_model

    device = device or data["train"].x.device
    key = training_key(data, config, seed) | ({"probe": probe[0]} if probe is not None else {})
    seed_everything(seed)
    model = get_model(config.model, **config.model_kwargs).to(device)
    measure = probe[1] if probe is not None else None
    state, meta = cache.memoized(key, lambda: _train(model, data, config, seed, progress, measure,
                                                     key if use_cache else None),
                                 read=use_cache, write=use_cache)
    if use_cache:
        cache.drop_partial(key)  # only now: the finished entry is saved
    state = dict(state)
    probed = state.pop(PROBE_KEY, None)
    model.load_state_dict(state)
    if probed is not None:
        meta = {**meta, "probe": probed.to(device)}
    return model.eval(), meta


PROBE_KEY = "_probe"  # the probes' entry in a cached state dict (not a parameter of the model)


def _train(model: nn.Module, data: dict[str, Split], config: TrainConfig, seed: int, progress: bool,
           measure: Callable[[nn.Module], torch.Tensor] | None, resume_key: dict | None = None) -> tuple[dict, dict]:
    """``train_classifier``'s training, in place: returns the trained state (with the stacked
    probes under ``PROBE_KEY``) and its metadata. With ``resume_key``, each finished epoch is saved
    under it and a saved one is continued."""
    train, val = data["train"], data["val"]
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            fused=next(model.parameters()).is_cuda)  # one update kernel on a GPU
    sched = config.scheduler(opt, -(-len(train) // config.batch_size))
    augment, loss_fn = config.augmentation(), LOSSES[config.loss]
    history = {"val_acc": []}
    probes = []
    bar = tqdm(total=config.epochs * len(train), desc=f"train {config.model} seed {seed}", unit="img",
               unit_scale=True, disable=not progress, mininterval=5)
    first = 0
    saved = cache.load_partial(resume_key) if resume_key is not None else None
    if saved is not None and measure is not None and "probes" not in saved:
        saved = None  # a snapshot from before probes were kept cannot give the earlier epochs' probes
    if saved is not None:
        first = _restore(saved, model, opt, sched)
        history, probes = saved["history"], saved.get("probes", [])
        bar.update(first * len(train))
    elif measure is not None:
        probes.append(measure(model.eval()))  # before training
    for e in range(first, config.epochs):
        train_epoch(model, train, opt, config.batch_size, seed * 1000 + e, sched, bar, augment, loss_fn)
        history["val_acc"].append(accuracy(model, val))
        if measure is not None:
            probes.append(measure(model.eval()))
        if resume_key is not None and e + 1 < config.epochs:
            cache.save_partial(resume_key, _snapshot(e + 1, model, opt, sched, history, probes))
    bar.close()
    meta = {"val_acc": history["val_acc"][-1] if history["val_acc"] else accuracy(model, val), "history": history}
    state = model.state_dict()
    if measure is not None:
        state = {**state, PROBE_KEY: torch.stack(probes)}
    return state, meta


def _snapshot(epoch: int, model: nn.Module, opt, sched, history: dict, probes: list) -> dict:
    """Everything a resumed training needs to go on as if it had never stopped. The batch order and
    augmentation are seeded per epoch; the global random state covers the rest (dropout)."""
    cuda = next(model.parameters()).is_cuda
    return {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None, "history": history, "probes": probes,
            "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state() if cuda else None}


def _restore(saved: dict, model: nn.Module, opt, sched) -> int:
    """Load a ``_snapshot`` into the training's objects; returns the epoch to start from."""
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    if sched is not None:
        sched.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda_rng"])
    return saved["epoch"]
