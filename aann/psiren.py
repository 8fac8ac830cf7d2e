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
import pickle
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import cache
from .data import Split
from .models import get_model, trainable_parameters
from .pruning import SCOPES, check_sparsity, gradual_schedule, prune_to
from .runtime import default_device, derived_seed, seed_everything
from .ternary import ternarize
from .training import accuracy, random_shift, train_epoch

__all__ = ["PSirenConfig", "PSirenResult", "fine_tune", "p_siren", "p_siren_parallel", "LEVELS_FIG2",
           "LEVELS_FIG2B", "reference_budget", "reference_network"]


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
    shift: int = 0  # augmentation: each training image translated by up to `shift` pixels (0: none)

    def __post_init__(self):
        if self.shift < 0:
            raise ValueError(f"shift must be a non-negative number of pixels, got {self.shift}")
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


def fine_tune(model: nn.Module, train: Split, epochs: int, lr: float, batch_size: int = 128,
              cosine: bool = True, seed: int = 0, tags: tuple = (), after_epoch=None, augment=None,
              loss_fn=F.cross_entropy) -> None:
    """Train ``model`` with its masks fixed (sparsity kept; ternary layers stay ternary): Adam, the
    learning rate cosine-annealed to 0 over the ``epochs`` when ``cosine``. p-SIREN's steps 3 and
    4, and the backprop baseline of the SENSE chapter. ``after_epoch(e, model)`` is called after
    each epoch; ``augment(x, generator)`` transforms each batch and ``loss_fn(logits, y)`` scores
    it (see ``train_epoch``)."""
    opt = torch.optim.Adam(trainable_parameters(model), lr=lr)
    steps = epochs * -(-len(train) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine and steps else None
    for e in range(epochs):
        train_epoch(model, train, opt, batch_size, derived_seed(seed, *tags, e), sched, augment=augment, loss_fn=loss_fn)
        if after_epoch is not None:
            after_epoch(e, model)


def p_siren(data: dict[str, Split], levels, seed: int = 0, config: PSirenConfig | None = None,
            device=None, use_cache: bool = True, progress: bool = True,
            rate_levels=None) -> dict[float, PSirenResult]:
    """Run Algorithm 1 for every sparsity in ``levels`` (percent, each in [0, 100)).

    ``data`` holds ``train`` and ``val`` splits (``val`` only reports; nothing is selected on it
    here). The pruning rate is ``max(levels) / n2`` percent per epoch; ``rate_levels`` (a superset of
    ``levels``) sets it from another list instead, so that a few levels of a larger sweep come out
    identical to (and from the same cache entries as) the sweep's. Returns, per level, the ternary
    network after step 4 and its history.
    """
    config = config or PSirenConfig()
    levels = sorted({check_sparsity(p) for p in levels})
    if not levels:
        raise ValueError("levels must name at least one sparsity")
    rate_levels = sorted({check_sparsity(p) for p in (rate_levels or levels)} | set(levels))
    train, val = data["train"], data["val"]
    device = device or train.x.device
    schedule = gradual_schedule(rate_levels, config.n2)
    rate = rate_levels[-1] / config.n2
    base_key = {
        "algorithm": "p_siren",
        # shift came later: left out at its default, so that the entries cached before stay valid
        **{k: v for k, v in asdict(config).items() if k != "n2" and not (k == "shift" and v == 0)},
        "prune_rate": round(rate, 9),
        "seed": seed,
        "train": train.fingerprint(),
    }

    def key(level):
        return {**base_key, "level": level}

    def build():
        seed_everything(seed)
        return get_model(config.model, **config.model_kwargs).to(device)

    # One trajectory serves every level (the levels fork from one pruned trunk), so one training fills
    # several cache entries: the sweep reads and writes them itself rather than through
    # cache.memoized, which memoizes one computation per entry.
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

    augment = None if config.shift == 0 else partial(random_shift, shift=config.shift)

    def fork(trunk: nn.Module, p: float) -> None:
        model = copy.deepcopy(trunk)
        hist = copy.deepcopy(history)
        fine_tune(model, train, config.n3, config.lr, config.batch_size, config.cosine, seed, ("step3", p),
                  after_epoch=lambda e, m: log(hist, 3, m, p), augment=augment)  # step 3: fixed mask
        ternarize(model)  # step 4
        fine_tune(model, train, config.n4, config.lr_ternary, config.batch_size, config.cosine, seed, ("step4", p),
                  after_epoch=lambda e, m: log(hist, 4, m, p), augment=augment)
        val_acc = accuracy(model, val)
        if use_cache:
            cache.save(key(p), model.state_dict(), {"val_acc": val_acc, "history": hist})
        results[p] = PSirenResult(p, model, val_acc, hist)

    # The trunk is saved after every epoch (once the levels it passed are forked), so a stopped
    # sweep goes on from its last epoch; a saved trunk past a level still to fork cannot serve.
    trunk_key = {**base_key, "trunk_of": rate_levels, "n2": config.n2}

    def fork_at(p: float) -> int:  # trunk epochs done when level p forks
        return config.n1 if p == 0 else config.n1 + next(k for k, s in enumerate(schedule, 1) if p in s)

    def snapshot(done: int, sparsity: float) -> None:
        if use_cache:
            cache.save_partial(trunk_key, {"done": done, "sparsity": sparsity, "model": trunk.state_dict(),
                                           "optimizer": opt.state_dict(), "history": history,
                                           "rng": torch.get_rng_state()})

    trunk = build()
    opt = torch.optim.Adam(trainable_parameters(trunk), lr=config.lr)
    done, sparsity = 0, 0.0
    saved = cache.load_partial(trunk_key) if use_cache else None
    if saved is not None and all(fork_at(p) > saved["done"] for p in todo):
        trunk.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        history, done, sparsity = saved["history"], saved["done"], saved["sparsity"]
        bar.update(done)
    for e in range(done, config.n1):  # step 1: dense
        train_epoch(trunk, train, opt, config.batch_size, derived_seed(seed, "step1", e), augment=augment)
        log(history, 1, trunk, 0.0)
        if e + 1 < config.n1:
            snapshot(e + 1, 0.0)
    if done <= config.n1:
        if 0.0 in todo:
            fork(trunk, 0.0)
        snapshot(config.n1, 0.0)
    for k, stops in enumerate(schedule[:last_epoch], 1):  # step 2: gradual pruning
        if config.n1 + k <= done:
            continue
        train_epoch(trunk, train, opt, config.batch_size, derived_seed(seed, "step2", k), augment=augment)
        log(history, 2, trunk, sparsity)  # the epoch trained at the previous epoch's sparsity
        for p in stops:  # then the end-of-epoch mask, forking each requested level passed
            prune_to(trunk, p, scope=config.scope)
            if p in todo:
                fork(trunk, p)
        sparsity = stops[-1]
        snapshot(config.n1 + k, sparsity)
    if use_cache:
        cache.drop_partial(trunk_key)
    bar.close()
    return dict(sorted(results.items()))


def p_siren_parallel(jobs: list[dict], workers: int, device=None) -> None:
    """Run several independent ``p_siren`` sweeps at once, one process each, ``workers`` at a time,
    into the model cache (nothing is returned: read the networks back with ``p_siren``).

    Each job is ``dict(dataset=..., seed=..., levels=..., config=..., train_size=...,
    rate_levels=...)`` (the last three optional). ``dataset`` names a data set of ``load_splits``
    (``train_size`` then subsets its training split), or is a picklable callable that the worker
    calls with the device to get its splits (e.g. ``demonstrations.DemonstrationSplits``: each
    worker reads the files itself). Why processes: the book's nets are small, so one
    training loop spends most of its time in Python issuing kernels and leaves a GPU mostly idle;
    several loops side by side fill it (seeds and data sets are independent trajectories). On a
    CPU the cores are split between the processes (``torch.get_num_threads() // workers`` threads
    each): two one-thread loops side by side do more than one loop on two threads, whose small
    kernels scale poorly (benchmarks/bench_psiren_workers.py). With ``workers == 1`` the jobs run
    here, one after the other, exactly as ``p_siren`` would.

    CPU training rounds differently with a different number of threads, so a network trained in a
    worker equals one trained in the notebook only up to float rounding; each is reproducible.
    """
    if workers < 1:
        raise ValueError(f"workers must be a positive number of processes, got {workers}")
    for job in jobs:
        missing, unknown = {"dataset", "seed", "levels"} - set(job), set(job) - set(_JOB_FIELDS)
        if missing or unknown:
            raise ValueError(f"a p-SIREN job has the fields {_JOB_FIELDS} (the first three required); "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        source = job["dataset"]
        if not (isinstance(source, str) or callable(source)):
            raise ValueError(f"a p-SIREN job's dataset is a data set name or a callable device -> splits, "
                             f"got {type(source).__name__} {source!r}")
        if callable(source) and job.get("train_size") is not None:
            raise ValueError(f"train_size subsets a named data set; the callable dataset {source} makes its own "
                             f"splits (got train_size={job['train_size']})")
    device = str(device or default_device())
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            _p_siren_job(job, device)
        return
    workers = min(workers, len(jobs))
    threads = max(1, torch.get_num_threads() // workers) if torch.device(device).type == "cpu" else None
    from concurrent.futures import ProcessPoolExecutor

    from .runtime import spawn_context

    for job in jobs:  # a job travels to its worker pickled: say which one cannot, before any starts
        try:
            pickle.dumps(job)
        except Exception as err:
            raise ValueError(f"p-SIREN job {job['dataset']} seed {job['seed']} cannot be sent to a worker process "
                             f"({err}); define its dataset callable at module level") from err
    with ProcessPoolExecutor(workers, mp_context=spawn_context()) as pool:
        futures = [pool.submit(_p_siren_job, job, device, False, threads) for job in jobs]
        for job, future in zip(jobs, futures):
            try:
                future.result()
            except Exception as err:
                raise RuntimeError(f"p-SIREN job {job['dataset']} seed {job['seed']} failed: {err}") from err


_JOB_FIELDS = ("dataset", "seed", "levels", "config", "train_size", "rate_levels")


def _p_siren_job(job: dict, device: str, progress: bool = True, threads: int | None = None) -> None:
    from .data import load_splits

    if threads is not None:
        torch.set_num_threads(threads)
    source = job["dataset"]
    data = source(device) if callable(source) else load_splits(source, train_size=job.get("train_size"),
                                                                device=device, download=True)
    p_siren(data, job["levels"], seed=job["seed"], config=job.get("config"), device=device,
            progress=progress, rate_levels=job.get("rate_levels"))


# Fig. 2a's 15 levels, plus 90 %: the paper's reference network for everything that follows.
LEVELS_FIG2 = [0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 87, 89, 90, 91, 93, 95]
# Fig. 2b's 19 levels (the car net): Fig. 2a's 15 and 96-99 %, plus 90 % again.
LEVELS_FIG2B = sorted(set(LEVELS_FIG2) | {96, 97, 98, 99})


def reference_budget(profile: str, seed: int = 0) -> dict:
    """The book's p-SIREN budget for ``profile`` (``aann.profiles``, chapter ``sparse_ternary``) as
    the arguments of the sweeps: ``levels``, ``seeds`` (from ``seed`` on), ``train_size``, ``config``.
    Every chapter that starts from a p-SIREN network reads it, so they all hit the same cache entries."""
    from .profiles import budgets

    b = budgets("sparse_ternary", profile)
    return dict(levels=list(b.levels), seeds=b.seeds(seed), train_size=b.train_size, config=b.config)


def reference_network(dataset: str, level: float, profile: str, seed: int = 0, device=None,
                      data: dict | None = None) -> PSirenResult:
    """The p-SIREN network of the book's chapter on sparse ternary networks at ``level`` (trained
    there, loaded here from the cache; trained now if the cache lacks it)."""
    from .data import load_splits

    budget = reference_budget(profile, seed)
    device = device or default_device()
    data = data or load_splits(dataset, train_size=budget["train_size"], device=device, download=True)
    if not 0 <= level <= max(budget["levels"]):
        raise ValueError(f"level must be in [0, {max(budget['levels'])}] for the {profile} profile, got {level}")
    # the pruning rate follows the profile's largest level, as in the chapter's sweep
    return p_siren(data, [level], seed=seed, config=budget["config"], device=device,
                   rate_levels=budget["levels"])[float(level)]
