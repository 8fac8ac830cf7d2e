r"""DAgger (Ross, Gordon & Bagnell, 2011) for the car net: let the network drive, have the expert
label the frames it actually sees, add them to the data, train again.

Behaviour cloning trains on the expert's own states only. A net that errs drifts into states the
expert never visits (half off the road, at an angle) and has no data there: its errors compound.
DAgger closes that gap. In round $i$ the driver executes the expert's class with probability
$\beta_i = \beta^i$ and the network's otherwise; every visited frame is labelled with the
expert's class; the network is trained further on the union of all labelled frames so far. The
network of each round drives the validation tracks, and the best of them by mean validation
return is the result (selection on validation tracks, never on the evaluation tracks).

The network stays what p-SIREN made: training keeps its mask and its ternary weights
(``aann.psiren.fine_tune``). Each round's frames and network are cached under a hash of the
starting network, the data, the configuration and the round, and each network's validation
return under its fingerprint, so a rerun replays nothing.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from . import cache
from .car_racing import CLASS_ACTIONS, MAX_STEPS, ExpertDriver, NetDriver, evaluate_driver, to_gray
from .data import Split
from .demonstrations import frames_split
from .psiren import fine_tune
from .training import accuracy

__all__ = ["DAGGER_SEED_BASE", "DaggerConfig", "MixedDriver", "collect", "validation_return", "DaggerResult",
           "dagger"]

DAGGER_SEED_BASE = 50_000  # tracks the network drives to collect data: their own range (see demonstrations)


@dataclass(frozen=True)
class DaggerConfig:
    rounds: int = 4
    tracks_per_round: int = 4  # new tracks driven (and labelled) per round
    steps: int = 1000  # frames per collected track
    beta: float = 0.5  # round i executes the expert's class with probability beta ** i
    epochs: int = 3  # training epochs per round, on all frames so far
    lr: float = 3e-4
    batch_size: int = 128

    def __post_init__(self):
        if self.rounds < 1 or self.tracks_per_round < 1 or self.epochs < 1:
            raise ValueError(f"rounds, tracks_per_round and epochs must be >= 1, got {self.rounds}, "
                             f"{self.tracks_per_round}, {self.epochs}")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in [1, 1000], got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


class MixedDriver:
    """Executes the expert's class with probability ``beta`` and the network's otherwise; labels
    every frame with the expert's class. ``seed`` seeds the coin (the same at every reset)."""

    def __init__(self, model: nn.Module, beta: float, seed=0):
        self.net, self.beta, self.seed = NetDriver(model), beta, seed

    def reset(self, env):
        self.expert = ExpertDriver(classes=True)
        self.expert.reset(env)
        self.rng = np.random.default_rng(self.seed)

    def label(self, obs) -> int:
        return self.expert.label(obs)

    def act(self, obs) -> np.ndarray:
        if self.beta and self.rng.random() < self.beta:
            return CLASS_ACTIONS[self.label(obs)]
        return self.net.act(obs)


def collect(model: nn.Module, seeds, beta: float, steps: int, seed: int = 0, workers: int = 1,
            progress: bool = True) -> Split:
    """Frames the mixed driver visits on the tracks ``seeds``, each labelled with the expert's
    class, as a Split (N x 1 x 96 x 96 in [0, 1]). The model must be on the CPU (it is copied into
    each worker process)."""
    drivers = [MixedDriver(model, beta, seed=[seed, int(s)]) for s in seeds]
    episodes = evaluate_driver(drivers, seeds, max_steps=steps, workers=workers, record=True, progress=progress,
                               desc=f"DAgger collection (beta {beta:.3g})")
    return frames_split(np.concatenate([np.stack([to_gray(f) for f in e.frames]) for e in episodes]),
                        np.concatenate([e.labels for e in episodes]).astype(np.int64))


def validation_return(model: nn.Module, seeds, steps: int = MAX_STEPS, workers: int = 1, use_cache: bool = True,
                      progress: bool = True, desc: str = "validation tracks") -> float:
    """Mean return of ``model`` driving the tracks ``seeds`` for ``steps`` frames each, cached
    under the network's exact fingerprint (episodes are deterministic), so a rerun drives nothing."""
    key = {"algorithm": "drive", "network": cache.state_fingerprint(model), "seeds": [int(s) for s in seeds],
           "steps": steps}

    def drive():
        driver = NetDriver(copy.deepcopy(model).cpu())  # a copy: the caller's network stays where it is, in its mode
        episodes = evaluate_driver(driver, seeds, max_steps=steps, workers=workers, progress=progress, desc=desc)
        return {}, {"mean_return": float(np.mean([e.total_return for e in episodes]))}

    return cache.memoized(key, drive, read=use_cache, write=use_cache)[1]["mean_return"]


@dataclass
class DaggerResult:
    model: nn.Module  # the selected round's network
    best_round: int  # 0: the starting network was best
    history: dict  # per round 0..R: val_return, val_acc (validation frames), frames (training set size)
    networks: list  # every round's network (round 0 first), on the CPU


def dagger(model: nn.Module, train: Split, val: Split, val_seeds, config: DaggerConfig = DaggerConfig(),
           seed: int = 0, device=None, workers: int = 1, use_cache: bool = True, progress: bool = True,
           val_steps: int = MAX_STEPS) -> DaggerResult:
    """Run DAgger from ``model`` (a p-SIREN car net) and the expert's demonstrations ``train``.
    ``val`` (frames) and ``val_seeds`` (tracks, driven for ``val_steps`` frames) only measure; the
    round is chosen on the mean return over ``val_seeds`` (the earliest of equals)."""
    if not val_seeds:
        raise ValueError("dagger needs at least one validation track to choose a round on")
    device = device or train.x.device
    # format 2: collected frames stored as N x 96 x 96 uint8
    base_key = {"algorithm": "dagger", "format": 2, **asdict(config), "seed": seed,
                "start": cache.state_fingerprint(model), "train": train.fingerprint()}
    net = copy.deepcopy(model).cpu()
    networks = [copy.deepcopy(net)]
    sets = [train.to("cpu")]  # every labelled frame so far: the expert's demonstrations, then each round's
    for r in range(1, config.rounds + 1):

        def run_round(r=r):  # collect with the current network, then fine-tune on everything so far
            seeds = [DAGGER_SEED_BASE + (r - 1) * config.tracks_per_round + j for j in range(config.tracks_per_round)]
            new = collect(net, seeds, config.beta ** r, config.steps, seed=seed + r, workers=workers, progress=progress)
            aggregate = Split(torch.cat([d.x for d in sets + [new]]), torch.cat([d.y for d in sets + [new]])).to(device)
            net.to(device)
            fine_tune(net, aggregate, config.epochs, config.lr, config.batch_size, cosine=True, seed=seed,
                      tags=("dagger", r))
            net.cpu()
            frames = new.x.squeeze(1).mul(255.0).round().to(torch.uint8)  # the frames were uint8: exact
            return {**net.state_dict(), "_frames": frames, "_labels": new.y}, {"frames": len(frames)}

        state, _ = cache.memoized({**base_key, "round": r}, run_round, read=use_cache, write=use_cache)
        state = dict(state)
        sets.append(frames_split(state.pop("_frames"), state.pop("_labels")))
        net.load_state_dict(state)
        networks.append(copy.deepcopy(net))
    history = {"round": list(range(config.rounds + 1)), "val_return": [], "val_acc": [],
               "frames": np.cumsum([len(d) for d in sets]).tolist()}
    for r, n in enumerate(networks):
        history["val_return"].append(validation_return(n, val_seeds, val_steps, workers, use_cache, progress,
                                                       desc=f"DAgger round {r}, validation tracks"))
        history["val_acc"].append(accuracy(n.to(device), val))
        n.cpu()
    best = int(np.argmax(history["val_return"]))
    return DaggerResult(networks[best], best, history, networks)
