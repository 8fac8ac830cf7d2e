"""The network a SENSE search stands on, and one step's neighbourhood: sampled neighbours scored on
the selection split, or the whole first neighbourhood of a layer (steepest ascent), and a step of
several swaps (a composite move) built greedily from the sampled ones.

A **composite move** (``SenseConfig.swaps_per_step`` > 1, beyond the paper): after moving to the
step's best neighbour, the next-best sampled swaps that improved on the network the step started
from are scored again on the network it stands on now, and the best of them is taken if it is
strictly better; and so on, up to ``swaps_per_step`` swaps. Each round scores only as many of them,
best first, as swaps are still allowed: a round costs a few evaluations, not another step's worth.
Each swap is a bit-swap, so the network stays in the family, and each is scored before it is taken
(the same arithmetic that then moves the caches), so the fitness never falls within a step. The
second scorings count as evaluations.

Why it pays: with a smooth fitness most sampled swaps of a poor network lower the loss, and swaps
that touch different units barely interact, so a step that keeps one of them wastes most of what
it measured (the sense chapter compares one swap a step with up to eight).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .data import Split
from .neighbours import (NeighbourEvaluator, Swaps, apply_swap, iter_neighbours, neighbourhood_size,
                         sample_neighbours, scan)
from .neighbours.fused import fusing_batch
from .runtime import derived_seed
from .ternary import sparse_layer

if TYPE_CHECKING:
    from .sense import SenseConfig

__all__ = ["Move", "Neighbourhood", "Climber"]


@dataclass(frozen=True)
class Move:
    """A neighbour: the swap ``src -> dst`` of ``layer`` and what it scored."""

    layer: str
    src: int
    dst: int
    fitness: float  # the accuracy, or minus the loss (cross-entropy fitness)
    acc: float


@dataclass(frozen=True)
class Neighbourhood:
    """One step's neighbourhood, evaluated: its best neighbour (the first best, on ties), how many
    neighbours were evaluated, what ``record`` keeps of it, when annealing the neighbour drawn at
    random as the proposal, and for a composite move the runners-up (best first)."""

    best: Move
    evaluations: int
    recorded: tuple | None = None
    proposal: Move | None = None
    runners_up: tuple[Move, ...] = ()


class Climber:
    """The network a search stands on, with the evaluators that score its neighbours: selection
    (``select``) and, if given, the split that is only reported (``report``). A move is one call;
    the network and both evaluators' caches move together."""

    def __init__(self, model: nn.Module, select: Split, report: Split | None = None):
        self.net = copy.deepcopy(model)
        self.evaluator = NeighbourEvaluator(self.net, select)
        # the report split gets an evaluator too: after a move only the moved layer's channels and
        # what follows are recomputed, and both accuracies are counted the same way (float64, exact)
        self.reporter = NeighbourEvaluator(self.net, report) if report is not None else None

    def follow(self, path) -> None:
        """Replay the moves of ``path`` (a resumed search). The evaluators' caches then hold bit
        for bit what a search run straight through holds (``NeighbourEvaluator.follow``; a fresh
        evaluator of the last member agrees only to rounding), so the search goes on along the
        same trajectory."""
        for layer, src, dst in path:
            apply_swap(self.net, layer, src, dst)
        for ev in (self.evaluator, self.reporter):
            if ev is not None:
                ev.follow(path)

    def move(self, layer: str, src: int, dst: int) -> None:
        apply_swap(self.net, layer, src, dst)
        for ev in (self.evaluator, self.reporter):
            if ev is not None:
                ev.apply_swap(layer, src, dst)

    @property
    def val_acc(self) -> float:
        return self.evaluator.base_accuracy

    @property
    def test_acc(self) -> float | None:
        return self.reporter.base_accuracy if self.reporter is not None else None

    def fitness(self, loss_t: float | None) -> float:
        """The accuracy on the selection split, or minus its loss at temperature ``loss_t``."""
        return self.val_acc if loss_t is None else -self.evaluator.base_loss(loss_t)

    def _score(self, swaps: Swaps, loss_t: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(fitness, accuracy) of each neighbour in ``swaps`` on the selection split."""
        if loss_t is None:
            acc = self.evaluator.evaluate(swaps, batch_size=1024)
            return acc, acc
        acc, loss = self.evaluator.evaluate(swaps, batch_size=1024, loss_temperature=loss_t)
        return -loss, acc

    def neighbourhood(self, layer: str, config: SenseConfig, step: int, record: bool,
                      loss_t: float | None) -> Neighbourhood:
        """Evaluate the step's neighbourhood of ``layer``: all of it, or ``config.neighbours``
        drawn with the step's seed."""
        net, evaluator = self.net, self.evaluator
        if config.neighbours == "all":
            total = neighbourhood_size(net, layer)
            # batches big enough for the CPU's fused step (aann.neighbours.fused): a whole layer-1.0
            # neighbourhood on 1,000 images is 4 x 10^7 neighbour-images, several times cheaper fused
            batch = max(4096, fusing_batch(len(evaluator.y)))
            sc = scan(evaluator, iter_neighbours(net, layer, batch), total=-(-total // batch), progress=False,
                      loss_temperature=loss_t)
            fit = sc.best_acc if loss_t is None else -sc.best_loss
            return Neighbourhood(Move(layer, sc.best_src, sc.best_dst, fit, sc.best_acc), total,
                                 (layer, None, None, sc.acc) if record else None)
        n = min(config.neighbours, neighbourhood_size(net, layer))
        swaps = sample_neighbours(net, layer, n, seed=derived_seed(config.seed, "neighbours", step))
        fit, acc = self._score(swaps, loss_t)

        def move(i: int) -> Move:
            return Move(layer, int(swaps.src[i]), int(swaps.dst[i]), fit[i].item(), acc[i].item())

        proposal = None
        if config.temperature is not None:
            proposal = move(random.Random(derived_seed(config.seed, "propose", step)).randrange(n))
        runners_up = ()
        if config.swaps_per_step > 1:  # stable: among equals the earlier drawn first, as argmax
            order = torch.sort(fit, descending=True, stable=True).indices.tolist()
            runners_up = tuple(move(i) for i in order[1:])
        return Neighbourhood(move(int(fit.argmax())), n,  # argmax: the first best, on ties
                             (layer, swaps.src, swaps.dst, acc.float().cpu()) if record else None, proposal,
                             runners_up)

    def compose(self, first: Move, runners_up: tuple[Move, ...], start: float, limit: int,
                loss_t: float | None) -> tuple[list[Move], int]:
        """Extend the move to ``first`` (already taken) into a composite move of at most ``limit``
        swaps: the runners-up that beat ``start`` (the fitness before the step), as many as swaps
        are still allowed and best first, are scored again on the current network, and the best
        is taken while it is strictly better than the current network. Returns the further swaps
        taken, in order (each with the fitness and selection accuracy of the network it led to),
        and the number of neighbours scored again."""
        candidates = [m for m in runners_up if m.fitness > start]
        current, rescored, taken = self.fitness(loss_t), 0, []
        while len(taken) + 1 < limit:
            t = sparse_layer(self.net, first.layer).ternary_values().flatten()
            # swaps that share a weight with one taken are no longer bit-swaps of this network
            candidates = [m for m in candidates if t[m.src] != 0 and t[m.dst] == 0]
            round_ = candidates[:limit - 1 - len(taken)]
            if not round_:
                break
            swaps = Swaps(first.layer, torch.tensor([m.src for m in round_]), torch.tensor([m.dst for m in round_]))
            fit, _ = self._score(swaps, loss_t)
            rescored += len(round_)
            i = int(fit.argmax())
            if not fit[i].item() > current:
                break
            m = candidates.pop(i)
            self.move(m.layer, m.src, m.dst)
            current = self.fitness(loss_t)
            taken.append(Move(m.layer, m.src, m.dst, current, self.val_acc))
        return taken, rescored
