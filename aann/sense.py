r"""SENSE, *stochastic search and succeed* (Algorithm 2): a hill-climb over bit-swap neighbours.

From a sparse ternary network $N^0$, each **step** takes one layer, evaluates a neighbourhood of
the current network $N^i$ in it (``neighbours`` first neighbours sampled, or all of them:
steepest ascent) and moves to the best neighbour $N^{i+1}$ if it is at least as good as $N^i$ on
the **selection** split. A bit-swap keeps every layer's counts of $-1, 0, +1$, so every network
the search visits has the family of $N^0$: the path is a *family* of architecturally distinct
networks.

Which layer a step perturbs comes from a **schedule** of blocks, each block up to ``block`` steps
in one layer; a step without an acceptable neighbour ends its block (Alg. 2: "stop current search;
pick another layer"):

* ``"alternate"``: the layers in turn (Fig. 6: 10 steps each, the cycle three times);
* a layer name, e.g. ``"fc"``: that layer only (Fig. 7);
* ``"random"``: a random layer per block (Fig. 8: 3 steps per pick).

**Simulated annealing** (the paper's future work): with ``temperature=(t0, t1)``, a step whose best
neighbour is not better than the current network proposes one of the sampled neighbours at random
(Metropolis) and takes it with probability $e^{-\Delta/T}$ ($\Delta$ how much worse it is, in
accuracy as a fraction, or in loss), $T$ falling geometrically from ``t0`` to ``t1`` over the steps;
a better best neighbour is taken as in the climb. The best network seen is kept apart from the
current one. Why a random proposal: among a few hundred sampled swaps some always tie with the
current network, so the best one is never worse and an annealer that only considers it never steps
down (it followed the plain climb move for move in this book's first version).

Every random choice is drawn from a generator seeded by ``(seed, what, index)``, never from a
running stream, and the search state (the accepted swaps, the counters, the history) is written to
``checkpoint`` every ``checkpoint_every`` seconds and when a call ends: a search stopped anywhere
and resumed follows the same trajectory as one run straight through. For the same reason a
finished search can be taken further: ``sense(..., extends=<the shorter run's checkpoint>)`` with
more ``steps`` continues where it ended (not for annealing, whose schedule depends on the total).

**A smooth fitness** (beyond the paper): with ``fitness="cross_entropy"`` neighbours are ranked,
and moves accepted, by the selection split's mean cross-entropy of $\mathrm{softmax}(z / T)$
instead of its accuracy. Accuracy moves in steps of one image; most neighbours of a poor network
tie or change it by an image or two, so the climb is nearly blind. The loss sees every image's
margin. $T$ is ``loss_temperature`` times the output layer's scale $\bar\alpha$ (its mean): the
logits are $\alpha$ times sums of ternary weights times HardTanh outputs, so $z / \bar\alpha$ is
a count of saturated votes whatever the network, and one temperature serves every network.
Annealing's $\Delta$ is then a difference of losses.

The paper's Algorithm 2 selects on *test* accuracy. Here the selection split is held out from
training (validation) and the test split is only reported.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .cache import state_fingerprint
from .data import Split
from .models import get_model
from .neighbours import (NeighbourEvaluator, apply_swap, iter_neighbours, neighbourhood_size,
                         sample_neighbours, scan)
from .pruning import check_sparsity, prune_to
from .paths import cache_dir
from .runtime import seed_everything
from .ternary import sparse_layers, ternarize
from .training import logits

SCHEDULES = ("alternate", "random")
FITNESSES = ("accuracy", "cross_entropy")


@dataclass(frozen=True)
class SenseConfig:
    """One search. ``steps`` neighbourhoods in all; ``neighbours`` per step (an int, sampled
    without replacement, or ``"all"``: the whole first neighbourhood of the layer)."""

    schedule: str = "random"
    steps: int = 30
    block: int = 3
    neighbours: int | str = 100
    layers: tuple[str, ...] | None = None
    accept_ties: bool = True  # Alg. 2 moves unless the current network is strictly better
    temperature: tuple[float, float] | None = None
    seed: int = 0
    fitness: str = "accuracy"  # or "cross_entropy" (beyond the paper; see the module's docstring)
    loss_temperature: float = 0.5  # the cross-entropy's softmax temperature, in units of the output scale


@dataclass
class SenseResult:
    """What a search did. ``history`` has one entry per step (lists): ``layer``, ``moved``,
    ``best_neighbour`` (the selection accuracy of the step's best neighbour), ``fitness`` (the current
    network's after the step: its selection accuracy, or minus its loss), ``val_acc`` and
    ``test_acc`` of the current network after the step, ``evaluations`` (neighbours evaluated so far), ``temperature``.
    ``path`` lists the accepted swaps ``(layer, src, dst)``; family member ``i`` is the initial
    network with the first ``i`` of them; ``member_val`` holds each member's selection accuracy."""

    config: SenseConfig
    initial: nn.Module
    path: list = field(default_factory=list)
    member_val: list = field(default_factory=list)
    history: dict = field(default_factory=dict)
    neighbourhoods: list = field(default_factory=list)  # per step, when recorded: (layer, src, dst, acc)
    step: int = 0
    block: int = 0
    in_block: int = 0

    @property
    def best_member(self) -> int:
        """The member with the highest selection accuracy (the earliest, on ties)."""
        return max(range(len(self.member_val)), key=lambda i: (self.member_val[i], -i))

    def member(self, i: int) -> nn.Module:
        """Family member ``i`` as a network (a copy; the initial network is not changed)."""
        if not 0 <= i < len(self.member_val):
            raise IndexError(f"member {i} does not exist; this family has members 0..{len(self.member_val) - 1}")
        net = copy.deepcopy(self.initial)
        for layer, src, dst in self.path[:i]:
            apply_swap(net, layer, src, dst)
        return net

    @property
    def network(self) -> nn.Module:
        """The current network (the last member)."""
        return self.member(len(self.member_val) - 1)


def random_sparse_ternary(model: str, sparsity: float, seed: int = 0, **kwargs) -> nn.Module:
    """A randomly initialised network made ``sparsity`` % sparse in every layer and ternary: SENSE's
    start "without backprop". Magnitude pruning of random weights keeps a random set of positions;
    the signs are the random weights' signs and each layer's scale their mean magnitude."""
    sparsity = check_sparsity(sparsity)
    if sparsity == 0:
        raise ValueError("SENSE needs zero weights to swap into: sparsity must be in (0, 100)")
    seed_everything(seed)
    net = get_model(model, **kwargs)
    prune_to(net, sparsity, scope="layer")
    ternarize(net)
    return net


def schedule_layer(config: SenseConfig, layers: list[str], block: int) -> str:
    """The layer of block ``block`` of the schedule."""
    if config.schedule == "alternate":
        return layers[block % len(layers)]
    if config.schedule == "random":
        return random.Random(_seed(config.seed, "block", block)).choice(layers)
    return config.schedule  # one layer only


def _seed(*tags) -> int:
    return int(hashlib.sha256(repr(tags).encode()).hexdigest()[:8], 16)


def _check(config: SenseConfig, model: nn.Module) -> list[str]:
    names = list(sparse_layers(model))
    layers = list(config.layers) if config.layers is not None else names
    unknown = [n for n in layers if n not in names]
    if unknown or not layers:
        raise ValueError(f"layers {unknown or layers} are not sparse ternary layers of this model; allowed: {names}")
    if config.schedule not in SCHEDULES and config.schedule not in names:
        raise ValueError(f"schedule must be one of {SCHEDULES} or a layer name ({', '.join(names)}), "
                         f"got {config.schedule!r}")
    if config.steps < 0 or config.block < 1:
        raise ValueError(f"steps must be >= 0 and block >= 1, got steps={config.steps}, block={config.block}")
    if not (config.neighbours == "all" or (isinstance(config.neighbours, int) and config.neighbours >= 1)):
        raise ValueError(f"neighbours must be a positive int or 'all', got {config.neighbours!r}")
    if config.fitness not in FITNESSES:
        raise ValueError(f"fitness must be one of {FITNESSES}, got {config.fitness!r}")
    if not (math.isfinite(config.loss_temperature) and config.loss_temperature > 0):
        raise ValueError(f"loss_temperature must be a finite number > 0, got {config.loss_temperature!r}")
    if config.temperature is not None and not (len(config.temperature) == 2 and min(config.temperature) > 0):
        raise ValueError(f"temperature must be (t0, t1) with both > 0, got {config.temperature!r}")
    if config.temperature is not None and config.neighbours == "all":
        raise ValueError("annealing proposes a random one of a sampled neighbourhood: give neighbours as a "
                         "positive int, not 'all' (that is steepest ascent)")
    for layer in set(layers) | ({config.schedule} & set(names)):
        neighbourhood_size(model, layer)  # raises if the layer is 0 or 100 % sparse
    return layers


def temperature(config: SenseConfig, step: int) -> float:
    """Annealing temperature at ``step``: geometric from t0 to t1 (0 when not annealing)."""
    if config.temperature is None:
        return 0.0
    t0, t1 = config.temperature
    return t0 * (t1 / t0) ** (step / max(1, config.steps - 1))


def _save(path: Path, result: SenseResult, fingerprint: str) -> None:
    state = {k: getattr(result, k) for k in ("path", "member_val", "history", "neighbourhoods", "step", "block", "in_block")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": asdict(result.config), "initial": fingerprint, "state": state}, tmp)
    os.replace(tmp, path)  # atomic: a search killed while writing keeps its previous checkpoint


def _load(path: Path, config: SenseConfig, fingerprint: str, shorter: bool = False) -> dict | None:
    """The state saved at ``path`` (None if there is no file). ``shorter``: the file may hold the
    same search run to fewer steps (see ``sense``'s ``extends``)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"cannot read the SENSE checkpoint {path} ({e}); delete it to start afresh") from e
    theirs, ours = dict(saved["config"]), asdict(config)
    if shorter:
        if config.temperature is not None:
            raise ValueError("an annealing search cannot extend a shorter one: its temperature schedule "
                             "depends on the total number of steps")
        if theirs.get("steps", 0) > config.steps:
            raise ValueError(f"the checkpoint {path} ran {theirs['steps']} steps, more than the {config.steps} "
                             "of this search: it can only extend a shorter one")
        theirs["steps"] = ours["steps"]
    if saved["initial"] != fingerprint or theirs != ours:
        raise ValueError(f"the checkpoint {path} belongs to another search (other initial network or "
                         "configuration); delete it or pass another checkpoint path")
    return saved["state"]


def checkpoint_path(name: str, model: nn.Module, select: Split, config: SenseConfig) -> Path:
    """A checkpoint file in the model cache, named for the search and keyed by its start, its
    selection split and its configuration: a rerun resumes (or finds the search done), a changed
    search starts afresh in another file."""
    what = (state_fingerprint(model), select.fingerprint(), asdict(config))
    if config.temperature is not None:  # annealing has proposed at random since 54200b6: older checkpoints are not resumed
        what += ("metropolis",)
    key = hashlib.sha256(repr(what).encode()).hexdigest()[:12]
    folder = cache_dir() / "sense"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{key}.pt"


def sense(model: nn.Module, select: Split, config: SenseConfig, report: Split | None = None,
          checkpoint: str | Path | None = None, record: bool = False, stop_after: int | None = None,
          progress: bool = True, checkpoint_every: float = 30.0, extends: str | Path | None = None) -> SenseResult:
    """Run (or resume, from ``checkpoint``) a SENSE search from ``model`` (left unchanged).

    ``select``: the split that chooses among neighbours (validation); ``report``: a split whose
    accuracy is only recorded (test). ``record`` keeps every neighbourhood's accuracies (for the
    figures). ``stop_after``: do at most this many steps in this call (the state stays resumable).
    The checkpoint is written at most every ``checkpoint_every`` seconds and when the call ends: a
    killed search loses at most that much work, and resumes on the same trajectory (every draw is
    seeded by the step). ``extends``: the checkpoint of the same search run to fewer steps (not an
    annealing one, whose schedule depends on the total); where ``checkpoint`` does not exist yet,
    this search starts where that one ended, on the trajectory it would have followed from step 0.
    """
    layers = _check(config, model)
    initial = copy.deepcopy(model)
    result = SenseResult(config, initial)
    fingerprint = state_fingerprint(initial) + select.fingerprint()  # a checkpoint is for one start, one split
    path = Path(checkpoint) if checkpoint is not None else None
    state = _load(path, config, fingerprint) if path is not None else None
    if state is None and extends is not None:
        if not Path(extends).is_file():
            raise FileNotFoundError(f"the checkpoint to extend, {extends}, does not exist")
        state = _load(Path(extends), config, fingerprint, shorter=True)
    if state is not None:
        for key, value in state.items():
            setattr(result, key, value)
    end = config.steps if stop_after is None else min(config.steps, result.step + stop_after)
    if state is not None and result.step >= end:
        # nothing left to do in this call (a finished search, found in its checkpoint): the
        # evaluators, whose replay of a long path costs minutes, are not built
        return result
    net = copy.deepcopy(initial)
    evaluator = NeighbourEvaluator(net, select)
    # the report split gets an evaluator too: after a move only the moved layer's channels and
    # what follows are recomputed, and both accuracies are counted the same way (float64, exact)
    reporter = NeighbourEvaluator(net, report) if report is not None else None
    if state is not None:
        # the path replayed through the evaluators (NeighbourEvaluator.follow): their caches then
        # hold bit for bit what a search run straight through holds (a fresh evaluator of the last
        # member agrees only to rounding), so a resumed search follows the same trajectory
        for layer, src, dst in result.path:
            apply_swap(net, layer, src, dst)
        for ev in (evaluator, reporter):
            if ev is not None:
                ev.follow(result.path)
    loss_t = loss_temperature(config, net)
    fitness = lambda: evaluator.base_accuracy if loss_t is None else -evaluator.base_loss(loss_t)  # noqa: E731
    current = fitness()
    if not result.member_val:
        result.member_val = [evaluator.base_accuracy]
        result.history = {k: [] for k in ("layer", "moved", "best_neighbour", "fitness", "val_acc", "test_acc",
                                          "evaluations", "temperature")}
    best_so_far = max(result.member_val)
    test_acc = reporter.base_accuracy if reporter is not None else None
    saved_at = time.monotonic()
    bar = tqdm(total=config.steps, initial=result.step, desc=f"SENSE {config.schedule}", unit="step",
               disable=not progress, mininterval=5)
    while result.step < end:
        layer = schedule_layer(config, layers, result.block)
        best_fit, best_acc, src, dst, count, accs, proposal = _best_neighbour(net, evaluator, layer, config,
                                                                              result.step, record, loss_t)
        t = temperature(config, result.step)
        if best_fit > current or (config.accept_ties and best_fit == current):
            moved = True
        elif t > 0:  # annealing: a random proposal, taken with probability exp(-(current - its fitness) / T)
            fit, _, src, dst = proposal
            moved = random.Random(_seed(config.seed, "accept", result.step)).random() < math.exp(min(0.0, fit - current) / t)
        else:
            moved = False
        if moved:
            apply_swap(net, layer, src, dst)
            evaluator.apply_swap(layer, src, dst)
            current = fitness()
            result.path.append((layer, src, dst))
            result.member_val.append(evaluator.base_accuracy)
            best_so_far = max(best_so_far, evaluator.base_accuracy)
            if reporter is not None:
                reporter.apply_swap(layer, src, dst)
                test_acc = reporter.base_accuracy
            result.in_block += 1
        if not moved or result.in_block == config.block:  # the block ends: the schedule's next layer
            result.block += 1
            result.in_block = 0
        h = result.history
        h["layer"].append(layer)
        h["moved"].append(moved)
        h["best_neighbour"].append(best_acc)
        h["fitness"].append(current)
        h["val_acc"].append(evaluator.base_accuracy)
        h["test_acc"].append(test_acc)
        h["evaluations"].append((h["evaluations"][-1] if h["evaluations"] else 0) + count)
        h["temperature"].append(t)
        if record:
            result.neighbourhoods.append(accs)
        result.step += 1
        # saving costs more as the history grows (tens of ms after thousands of steps): not every step
        if path is not None and (result.step == end or time.monotonic() - saved_at >= checkpoint_every):
            _save(path, result, fingerprint)
            saved_at = time.monotonic()
        bar.update(1)
        bar.set_postfix(val=f"{evaluator.base_accuracy:.4f}", best=f"{best_so_far:.4f}", refresh=False)
    bar.close()
    return result


def loss_temperature(config: SenseConfig, model: nn.Module) -> float | None:
    """The cross-entropy's softmax temperature $T$ = ``loss_temperature`` x the mean scale of the
    output layer (None for the accuracy fitness)."""
    if config.fitness == "accuracy":
        return None
    scale = list(sparse_layers(model).values())[-1].scale
    return config.loss_temperature * float(scale.detach().abs().mean())


def _best_neighbour(net, evaluator, layer, config, step, record, loss_t):
    """Evaluate the step's neighbourhood: (best fitness, its accuracy, its src, its dst, how many,
    recorded, proposal). The fitness is the accuracy, or minus the loss at temperature ``loss_t``.
    ``proposal``: when annealing, (fitness, accuracy, src, dst) of a neighbour drawn at random."""
    if config.neighbours == "all":
        total = neighbourhood_size(net, layer)
        batch = 4096
        sc = scan(evaluator, iter_neighbours(net, layer, batch), total=-(-total // batch), progress=False,
                  loss_temperature=loss_t)
        recorded = (layer, None, None, sc.acc) if record else None
        fit = sc.best_acc if loss_t is None else -sc.best_loss
        return fit, sc.best_acc, sc.best_src, sc.best_dst, total, recorded, None
    n = min(config.neighbours, neighbourhood_size(net, layer))
    swaps = sample_neighbours(net, layer, n, seed=_seed(config.seed, "neighbours", step))
    if loss_t is None:
        acc = fit = evaluator.evaluate(swaps, batch_size=1024)
    else:
        acc, loss = evaluator.evaluate(swaps, batch_size=1024, loss_temperature=loss_t)
        fit = -loss
    i = int(fit.argmax())  # the first best, on ties
    recorded = (layer, swaps.src, swaps.dst, acc.float().cpu()) if record else None
    proposal = None
    if config.temperature is not None:
        j = random.Random(_seed(config.seed, "propose", step)).randrange(n)
        proposal = (fit[j].item(), acc[j].item(), int(swaps.src[j]), int(swaps.dst[j]))
    return fit[i].item(), acc[i].item(), int(swaps.src[i]), int(swaps.dst[i]), n, recorded, proposal


# ----------------------------------------------------------------------------------------------
# Family ensembles


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
