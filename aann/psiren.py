r"""p-SIREN (Algorithm 1 of Talukder, Raghavan & Yue): p-percent sparse ternary networks.

1. train a dense network for $n_1$ epochs;
2. prune gradually: at the end of each of $n_2$ epochs, mask the lowest-magnitude weights, at a
   constant rate $r = p / n_2$ percent per epoch, until $p$ percent are 0;
3. train $n_3$ epochs with the mask fixed;
4. ternarize, $t = \operatorname{sign}(w) \odot m$ (zeros stay zeros), and train $n_4$ epochs in
   ternary mode, the mask still fixed.

For many levels at once (Fig. 2a: 15 of them) the run shares work: steps 1-2 form one trajectory
to the largest level at rate $r = p_{max} / n_2$, and steps 3-4 fork off it where it passes each
level. Because the rate is constant, the trajectory up to level $p$ is exactly the one a run aimed
at $p$ alone (with $n_2 = p / r$ epochs) would follow, and magnitude pruning to $p$ then to $p'$
equals pruning to $p'$ at once. Each forked network is cached under a hash of everything it depends
on; the trajectory stops at the last level not yet in the cache.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from . import cache
from .data import Split
from .models import get_model
from .pruning import SCOPES, check_sparsity, gradual_schedule, prune_to
from .runtime import seed_everything
from .ternary import ternarize
from .training import accuracy, train_epoch


@dataclass
class PSirenConfig:
    """Budgets and optimiser of Algorithm 1 (the paper gives no values; the chapter says ours)."""

    model: str = "mnist_net"
    model_kwargs: dict = field(default_factory=dict)
    n1: int = 10  # dense epochs
    n2: int = 38  # pruning epochs to reach the largest level (95 % / 38 = 2.5 % per epoch)
    n3: int = 4  # epochs with the mask fixed
    n4: int = 6  # ternary epochs
    lr: float = 1e-3  # Adam, steps 1-3
    lr_ternary: float = 1e-3  # Adam on the latent weights, step 4
    cosine: bool = True  # steps 3 and 4: learning rate decays to 0 along a cosine, per batch
    batch_size: int = 128
    scope: str = "global"  # "global": p % of all weights, one ranking (the paper's definition); "layer": p % of each

    def __post_init__(self):
        for name in ("n1", "n2", "n3", "n4"):
            if getattr(self, name) < 0 or (name == "n2" and self.n2 < 1):
                raise ValueError(f"{name} must be a non-negative number of epochs (n2 >= 1), got {getattr(self, name)}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")


@dataclass
class PSirenResult:
    level: float
    model: nn.Module
    val_acc: float
    history: dict  # per-epoch validation accuracy along the run: {"step": [...], "sparsity": [...], "val_acc": [...]}


def _data_fingerprint(split: Split) -> str:
    """A cheap content hash, so a cache entry never outlives a change of the training data."""
    h = hashlib.sha256()
    h.update(str(tuple(split.x.shape)).encode())
    h.update(split.y.cpu().numpy().tobytes())
    h.update(split.x.flatten()[:: max(1, split.x.numel() // 100_000)].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _epoch_seed(seed: int, *tags) -> int:
    """Each epoch's shuffling seed depends only on where the epoch is, not on what ran before."""
    return int(hashlib.sha256(repr((seed, *tags)).encode()).hexdigest()[:8], 16)


def p_siren(data: dict[str, Split], levels, seed: int = 0, config: PSirenConfig | None = None,
            device=None, use_cache: bool = True, progress: bool = True) -> dict[float, PSirenResult]:
    """Run Algorithm 1 for every sparsity in ``levels`` (percent, each in [0, 100)).

    ``data`` holds ``train`` and ``val`` splits (``val`` only reports; nothing is selected on it
    here). Returns, per level, the ternary network after step 4 and its history.
    """
    config = config or PSirenConfig()
    levels = sorted({check_sparsity(p) for p in levels})
    if not levels:
        raise ValueError("levels must name at least one sparsity")
    train, val = data["train"], data["val"]
    device = device or train.x.device
    schedule = gradual_schedule(levels, config.n2)
    rate = levels[-1] / config.n2
    base_key = {
        "algorithm": "p_siren",
        **{k: v for k, v in asdict(config).items() if k != "n2"},
        "prune_rate": round(rate, 9),
        "seed": seed,
        "train": _data_fingerprint(train),
    }

    def key(level):
        return {**base_key, "level": level}

    def build():
        seed_everything(seed)
        return get_model(config.model, **config.model_kwargs).to(device)

    results: dict[float, PSirenResult] = {}
    if use_cache:
        for p in levels:
            hit = cache.load(key(p))
            if hit is not None:
                model = build()
                model.load_state_dict(hit[0])
                results[p] = PSirenResult(p, model, hit[1]["val_acc"], hit[1]["history"])
    todo = [p for p in levels if p not in results]
    if not todo:
        return results

    # Epochs of the shared trajectory needed to reach the last level still to do.
    last_epoch = 0 if todo[-1] == 0 else next(k for k, stops in enumerate(schedule, 1) if todo[-1] in stops)
    total = config.n1 + last_epoch + len(todo) * (config.n3 + config.n4)
    bar = tqdm(total=total, desc=f"p-SIREN seed {seed}", unit="epoch", disable=not progress, mininterval=5)
    history = {"step": [], "sparsity": [], "val_acc": []}

    def log(hist, step, model, sparsity):
        hist["step"].append(step)
        hist["sparsity"].append(sparsity)
        hist["val_acc"].append(accuracy(model, val))
        bar.update(1)

    def fork(trunk: nn.Module, p: float) -> None:
        model = copy.deepcopy(trunk)
        hist = copy.deepcopy(history)
        opt, sched = _optimizer(model, config.lr, config.n3)
        for e in range(config.n3):  # step 3: fixed mask
            train_epoch(model, train, opt, config.batch_size, _epoch_seed(seed, "step3", p, e), sched)
            log(hist, 3, model, p)
        ternarize(model)  # step 4
        opt, sched = _optimizer(model, config.lr_ternary, config.n4)
        for e in range(config.n4):
            train_epoch(model, train, opt, config.batch_size, _epoch_seed(seed, "step4", p, e), sched)
            log(hist, 4, model, p)
        val_acc = accuracy(model, val)
        if use_cache:
            cache.save(key(p), model.state_dict(), {"val_acc": val_acc, "history": hist})
        results[p] = PSirenResult(p, model, val_acc, hist)

    def _optimizer(model, lr, epochs):
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * -(-len(train) // config.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if config.cosine and steps else None
        return opt, sched

    trunk = build()
    opt = torch.optim.Adam(trunk.parameters(), lr=config.lr)
    for e in range(config.n1):  # step 1: dense
        train_epoch(trunk, train, opt, config.batch_size, _epoch_seed(seed, "step1", e))
        log(history, 1, trunk, 0.0)
    if 0.0 in todo:
        fork(trunk, 0.0)
    sparsity = 0.0
    for k, stops in enumerate(schedule[:last_epoch], 1):  # step 2: gradual pruning
        train_epoch(trunk, train, opt, config.batch_size, _epoch_seed(seed, "step2", k))
        log(history, 2, trunk, sparsity)  # the epoch trained at the previous epoch's sparsity
        for p in stops:  # then the end-of-epoch mask, forking each requested level passed
            prune_to(trunk, p, scope=config.scope)
            if p in todo:
                fork(trunk, p)
        sparsity = stops[-1]
    bar.close()
    return dict(sorted(results.items()))
