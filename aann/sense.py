r"""SENSE, *stochastic search and succeed* (Algorithm 2): a hill-climb over bit-swap neighbours.

From a sparse ternary network $N^0$, each **step** takes one layer, evaluates a neighbourhood of
the current network $N^i$ in it (``neighbours`` first neighbours sampled, or all of them:
steepest ascent) and moves to the best neighbour $N^{i+1}$ if it is at least as good as $N^i$ on
the **selection** split (or, beyond the paper, takes several swaps: composite moves, in
:mod:`aann.sense_climber`). A bit-swap keeps every layer's counts of $-1, 0, +1$, so every network
the search visits has the family of $N^0$: the path is a *family* of architecturally distinct
networks.

Which layer a step perturbs comes from a **schedule** of blocks, each block up to ``block`` steps
in one layer; a step without an acceptable neighbour ends its block (Alg. 2: "stop current search;
pick another layer"):

* ``"alternate"``: the layers in turn (Fig. 6: 10 steps each, the cycle three times);
* a layer name, e.g. ``"fc"``: that layer only (Fig. 7);
* ``"random"``: a random layer per block (Fig. 8: 3 steps per pick);
* ``"adaptive"`` (beyond the paper): a random layer per block among those not *resting*. A step
  that finds no acceptable neighbour rests its layer for $2^f$ steps (at most ``MAX_REST``), $f$
  its steps in a row without one; a move ends the rest. A layer that has stopped improving (in
  the MNIST net the first convolution, whose steps also cost the most) is then tried now and
  then instead of in a third of the blocks.

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
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from tqdm import tqdm

from . import store
from .cache import state_fingerprint
from .data import Split
from .models import get_model
from .neighbours import NeighbourEvaluator, apply_swap, neighbourhood_size
from .pruning import check_sparsity, prune_to
from .runtime import derived_seed, seed_everything
from .sense_checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from .sense_climber import Climber, Move, Neighbourhood
from .ternary import sparse_layers, ternarize

__all__ = ["SCHEDULES", "FITNESSES", "MAX_REST", "SenseConfig", "SenseResult", "random_sparse_ternary",
           "schedule_layer", "Rests", "temperature", "checkpoint_path", "Move", "Neighbourhood", "Climber",
           "sense", "search", "exact_accuracy", "loss_temperature"]

SCHEDULES = ("alternate", "random", "adaptive")
MAX_REST = 64  # steps: the longest rest of the adaptive schedule
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
    swaps_per_step: int = 1  # > 1: composite moves (beyond the paper; see aann.sense_climber)


@dataclass
class SenseResult:
    """What a search did. ``history`` has one entry per step (lists): ``layer``, ``moved``,
    ``swaps`` (the swaps the step took: 0, 1, or more in a composite move), ``best_neighbour``
    (the selection accuracy of the step's best neighbour), ``fitness`` (the current
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

    def final(self) -> dict:
        """Where the search ended, as result keys: the current network's ``val_acc`` and
        ``test_acc`` after the last step and the neighbours ``evaluations`` spent (before any step:
        the start's validation accuracy, no test accuracy, 0)."""
        h = self.history
        if not h.get("val_acc"):
            return {"val_acc": self.member_val[0] if self.member_val else None, "test_acc": None, "evaluations": 0}
        return {"val_acc": h["val_acc"][-1], "test_acc": h["test_acc"][-1], "evaluations": h["evaluations"][-1]}

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


def schedule_layer(config: SenseConfig, layers: list[str], block: int, rests: "Rests | None" = None,
                   step: int = 0) -> str:
    """The layer of block ``block`` of the schedule (``"adaptive"``: starting at ``step``, with
    the ``rests`` of the search so far; without them every layer is awake)."""
    if config.schedule == "alternate":
        return layers[block % len(layers)]
    if config.schedule in ("random", "adaptive"):
        awake = rests.awake(step) if config.schedule == "adaptive" and rests is not None else layers
        return random.Random(derived_seed(config.seed, "block", block)).choice(awake)
    return config.schedule  # one layer only


class Rests:
    """The adaptive schedule's memory: for each layer, its steps in a row without an acceptable
    neighbour and the step its rest ends. A function of the history, so a resumed search rebuilds
    it by replaying the history and goes on along the same trajectory."""

    def __init__(self, layers: list[str], history: dict | None = None):
        self.layers = list(layers)
        self.fails, self.until = dict.fromkeys(layers, 0), dict.fromkeys(layers, 0)
        history = history or {}
        for step, (layer, moved) in enumerate(zip(history.get("layer", []), history.get("moved", []))):
            self.update(step, layer, moved)

    def update(self, step: int, layer: str, moved: bool) -> None:
        self.fails[layer] = 0 if moved else self.fails[layer] + 1
        self.until[layer] = step + 1 + min(2 ** self.fails[layer], MAX_REST) if self.fails[layer] else 0

    def awake(self, step: int) -> list[str]:
        """The layers not resting at ``step`` (all of them when every one rests)."""
        return [layer for layer in self.layers if self.until[layer] <= step] or self.layers


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
    if not (isinstance(config.swaps_per_step, int) and config.swaps_per_step >= 1):
        raise ValueError(f"swaps_per_step must be an int >= 1, got {config.swaps_per_step!r}")
    if config.swaps_per_step > 1 and (config.neighbours == "all" or config.temperature is not None):
        raise ValueError("a composite move (swaps_per_step > 1) is built from sampled neighbours by a climb: "
                         "give neighbours as a positive int and no temperature")
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
    state = load_checkpoint(path, config, fingerprint) if path is not None else None
    if state is None and extends is not None:
        if not Path(extends).is_file() and store.find(Path(extends).name) is None:
            raise FileNotFoundError(f"the checkpoint to extend, {extends}, does not exist")
        state = load_checkpoint(Path(extends), config, fingerprint, shorter=True)
    if state is not None:
        for key, value in state.items():
            setattr(result, key, value)
    end = config.steps if stop_after is None else min(config.steps, result.step + stop_after)
    if state is not None and result.step >= end:
        # nothing left to do in this call (a finished search, found in its checkpoint): the
        # evaluators, whose replay of a long path costs minutes, are not built
        return result
    climber = Climber(initial, select, report)
    if state is not None:
        climber.follow(result.path)
    loss_t = loss_temperature(config, climber.net)
    current = climber.fitness(loss_t)
    if not result.member_val:
        result.member_val = [climber.val_acc]
        result.history = {k: [] for k in ("layer", "moved", "swaps", "best_neighbour", "fitness", "val_acc",
                                          "test_acc", "evaluations", "temperature")}
    best_so_far = max(result.member_val)
    rests = Rests(layers, result.history) if config.schedule == "adaptive" else None
    saved_at = time.monotonic()
    bar = tqdm(total=config.steps, initial=result.step, desc=f"SENSE {config.schedule}", unit="step",
               disable=not progress, mininterval=5)
    while result.step < end:
        if rests is not None and result.in_block:  # the block goes on in its layer
            layer = result.history["layer"][-1]
        else:
            layer = schedule_layer(config, layers, result.block, rests, result.step)
        hood = climber.neighbourhood(layer, config, result.step, record, loss_t)
        t = temperature(config, result.step)
        step, start, swaps, rescored = hood.best, current, 0, 0
        if step.fitness > current or (config.accept_ties and step.fitness == current):
            moved = True
        elif t > 0:  # annealing: a random proposal, taken with probability exp(-(current - its fitness) / T)
            step = hood.proposal
            draw = random.Random(derived_seed(config.seed, "accept", result.step)).random()
            moved = draw < math.exp(min(0.0, step.fitness - current) / t)
        else:
            moved = False
        if moved:
            climber.move(layer, step.src, step.dst)
            taken = [Move(layer, step.src, step.dst, climber.fitness(loss_t), climber.val_acc)]
            if config.swaps_per_step > 1:
                more, rescored = climber.compose(step, hood.runners_up, start, config.swaps_per_step, loss_t)
                taken += more
            for m in taken:
                result.path.append((layer, m.src, m.dst))
                result.member_val.append(m.acc)
            current, swaps = taken[-1].fitness, len(taken)
            best_so_far = max(best_so_far, *result.member_val[-swaps:])
            result.in_block += 1
        if not moved or result.in_block == config.block:  # the block ends: the schedule's next layer
            result.block += 1
            result.in_block = 0
        h = result.history
        h["layer"].append(layer)
        h["moved"].append(moved)
        h["swaps"].append(swaps)
        h["best_neighbour"].append(hood.best.acc)
        h["fitness"].append(current)
        h["val_acc"].append(climber.val_acc)
        h["test_acc"].append(climber.test_acc)
        h["evaluations"].append((h["evaluations"][-1] if h["evaluations"] else 0) + hood.evaluations + rescored)
        h["temperature"].append(t)
        if rests is not None:
            rests.update(result.step, layer, moved)
        if record:
            result.neighbourhoods.append(hood.recorded)
        result.step += 1
        # saving costs more as the history grows (tens of ms after thousands of steps): not every step
        if path is not None and (result.step == end or time.monotonic() - saved_at >= checkpoint_every):
            save_checkpoint(path, result, fingerprint)
            saved_at = time.monotonic()
        bar.update(1)
        bar.set_postfix(val=f"{climber.val_acc:.4f}", best=f"{best_so_far:.4f}", refresh=False)
    bar.close()
    return result


def search(name: str, model: nn.Module, select: Split, config: SenseConfig, report: Split | None = None,
           **kwargs) -> SenseResult:
    """``sense`` with its checkpoint in the model cache, named ``name`` and keyed by the start, the
    selection split and the configuration (``checkpoint_path``): a rerun resumes the search, or
    finds it done (in the cache or in the model store) and costs nothing."""
    return sense(model, select, config, report=report, checkpoint=checkpoint_path(name, model, select, config), **kwargs)


def exact_accuracy(model: nn.Module, data: Split) -> float:
    """``model``'s accuracy on ``data`` counted as SENSE counts it (the neighbour evaluator's float64
    forward pass), so that it compares exactly with a search's ``val_acc`` and ``test_acc``."""
    return NeighbourEvaluator(model, data).base_accuracy


def loss_temperature(config: SenseConfig, model: nn.Module) -> float | None:
    """The cross-entropy's softmax temperature $T$ = ``loss_temperature`` x the mean scale of the
    output layer (None for the accuracy fitness)."""
    if config.fitness == "accuracy":
        return None
    scale = list(sparse_layers(model).values())[-1].scale
    return config.loss_temperature * float(scale.detach().abs().mean())
