"""The InfoVAE of self-introspection (Pardo et al., Table 2): an autoencoder whose 2-D bottleneck is
pushed towards N(0, I) by a maximum mean discrepancy penalty (Zhao, Song and Ermon's MMD-VAE).

    h --(N_h -> 3 x 200 ELU -> 2)--> z --(2 -> 3 x 200 ELU -> N_h)--> h_hat

    loss = 1/2 mean ||h - h_hat||^2 + lambda * MMD^2(z, samples of N(0, I))

The encoder is deterministic, as in the paper's table (a linear 2-unit bottleneck); the MMD term
alone gives z the prior's shape, which is what lets the self-introspection chapter integrate over
[-4, 4]^2 (eq. 7). Activations are standardised per unit before encoding (ELU units of different
layers differ in scale by orders of magnitude) and de-standardised after decoding, so ``decode``
returns activations in the classifier's own units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from . import cache
from .runtime import generator, seed_everything

__all__ = ["elu_mlp", "BANDWIDTHS", "gaussian_kernel", "mmd", "InfoVAE", "AutoencoderConfig", "fit",
           "infovae_loss", "train_infovae", "reconstruction_r2", "encode"]


def elu_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ELU between them (none after the last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidths=BANDWIDTHS) -> torch.Tensor:
    """k(a_i, b_j) = sum_s exp(-||a_i - b_j||^2 / (2 s^2)) over the bandwidths s, for all pairs.
    Several scales: with one, points far from the prior's mass feel no pull (the kernel is flat there)."""
    d2 = torch.cdist(a, b).pow(2)
    return sum(torch.exp(-d2 / (2 * s ** 2)) for s in bandwidths)


def mmd(z: torch.Tensor, prior: torch.Tensor, bandwidths=BANDWIDTHS) -> torch.Tensor:
    """The unbiased estimate of MMD^2 between the samples ``z`` and ``prior`` (Gretton et al. 2012):
    mean k(z, z') + mean k(p, p') - 2 mean k(z, p), the first two over distinct pairs only."""
    n, m = len(z), len(prior)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}")
    kzz, kpp, kzp = gaussian_kernel(z, z, bandwidths), gaussian_kernel(prior, prior, bandwidths), gaussian_kernel(z, prior, bandwidths)
    off = lambda k, size: (k.sum() - k.diagonal().sum()) / (size * (size - 1))  # noqa: E731
    return off(kzz, n) + off(kpp, m) - 2 * kzp.mean()


class InfoVAE(nn.Module):
    """Encoder and decoder of Table 2 with the standardisation of h held as buffers."""

    def __init__(self, n_in: int, hidden: int = 200, depth: int = 3, latent: int = 2):
        super().__init__()
        self.encoder = elu_mlp([n_in] + [hidden] * depth + [latent])
        self.decoder = elu_mlp([latent] + [hidden] * depth + [n_in])
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))

    def set_standardisation(self, h: torch.Tensor) -> None:
        self.mean.copy_(h.mean(0))
        self.scale.copy_(h.std(0).clamp_min(1e-6))  # dead units (constant output) keep scale 1e-6, not 0

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return self.encoder((h - self.mean) / self.scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) * self.scale + self.mean

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(h)
        return z, self.decode(z)


@dataclass
class AutoencoderConfig:
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128  # the paper's
    mmd_weight: float = 10.0
    bandwidths: tuple = BANDWIDTHS
    hidden: int = 200
    depth: int = 3
    latent: int = 2


def fit(model: nn.Module, loss_fn: Callable, tensors: tuple[torch.Tensor, ...], epochs: int, lr: float,
        batch_size: int, seed: int, desc: str, progress: bool = True) -> list[float]:
    """Adam with a cosine learning rate on minibatches of ``tensors`` drawn in a seeded order;
    ``loss_fn(model, *batch, generator)`` gives the loss. Returns the mean loss of each epoch."""
    gen = generator(seed)
    # fused: one kernel for the whole update on a GPU instead of several per parameter tensor
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=tensors[0].is_cuda)
    n = len(tensors[0])
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, mininterval=5):
        order = torch.randperm(n, generator=gen).to(tensors[0].device)
        total = torch.zeros((), device=tensors[0].device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(model, *(t[idx] for t in tensors), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            # summed on the device and read once an epoch: a .item() per step would make the CPU
            # wait for the GPU after every one of these small steps (they were launch-bound)
            total += loss.detach() * len(idx)
        history.append(total.item() / n)
    return history


def infovae_loss(config: AutoencoderConfig) -> Callable:
    """The training loss: half the mean squared reconstruction error of the standardised h, plus
    ``mmd_weight`` times MMD^2 between the batch's z and as many draws from N(0, I)."""

    def loss(model: InfoVAE, h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        z, h_hat = model(h)
        recon = 0.5 * ((h - h_hat) / model.scale).pow(2).mean()
        # drawn on the CPU generator (same numbers on every device); non_blocking: no wait for the GPU
        prior = torch.randn(z.shape, generator=gen).to(z.device, non_blocking=True)
        return recon + config.mmd_weight * mmd(z, prior, config.bandwidths)

    return loss


def train_infovae(h: torch.Tensor, config: AutoencoderConfig | None = None, seed: int = 0,
                  progress: bool = True) -> tuple[InfoVAE, dict]:
    """Fit an InfoVAE to activations ``h`` (N x N_h, on any device); cached under the
    configuration, the seed and a fingerprint of ``h``. Returns the model (eval mode) and
    ``{"history": [loss per epoch], "reconstruction_r2": fraction of h's variance it reconstructs}``."""
    config = config or AutoencoderConfig()
    if h.ndim != 2 or len(h) < 2:
        raise ValueError(f"h must be N x N_h with N >= 2, got shape {tuple(h.shape)}")
    seed_everything(seed)
    model = InfoVAE(h.shape[1], config.hidden, config.depth, config.latent).to(h.device)
    key = {"algorithm": "train_infovae", **asdict(config), "seed": seed, "h": cache.tensor_fingerprint(h)}

    def train():
        model.set_standardisation(h)
        history = fit(model, infovae_loss(config), (h,), config.epochs, config.lr, config.batch_size, seed,
                      f"InfoVAE on {h.shape[1]} activations", progress)
        model.eval()
        return model.state_dict(), {"history": history, "reconstruction_r2": reconstruction_r2(model, h)}

    state, meta = cache.memoized(key, train)
    model.load_state_dict(state)
    model.eval()
    return model, meta


@torch.inference_mode()
def reconstruction_r2(model: InfoVAE, h: torch.Tensor, batch_size: int = 4096) -> float:
    """1 - (squared reconstruction error) / (total variance), over all units of standardised h."""
    err = sum(((h[i:i + batch_size] - model(h[i:i + batch_size])[1]) / model.scale).pow(2).sum().item()
              for i in range(0, len(h), batch_size))
    total = ((h - model.mean) / model.scale).pow(2).sum().item()
    return 1.0 - err / total


@torch.inference_mode()
def encode(model: InfoVAE, h: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """z of every row of ``h`` (in batches, no gradient)."""
    model.eval()
    return torch.cat([model.encode(h[i:i + batch_size]) for i in range(0, len(h), batch_size)])
