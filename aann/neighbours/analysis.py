"""Scans of whole neighbourhoods and what the book reads from them: the best neighbour, the naive
reference, the neighbours' weight vectors and summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..data import Split
from ..ternary import sparse_layer
from .evaluator import NeighbourEvaluator
from .swaps import Swaps, apply_swap

__all__ = ["Scan", "scan", "naive_accuracy", "neighbour_weight_vectors", "neighbour_output_vectors",
           "distinct_distances", "neighbour_summary"]


@dataclass
class Scan:
    """Accuracies (and, when asked, mean cross-entropies) of many neighbours of one layer (float32,
    on the CPU, in the order scanned) and the best of them: the highest accuracy, or the lowest
    loss when losses were computed (the first one, on ties); ``best_acc`` is its accuracy,
    ``best_loss`` its loss (None without losses)."""

    layer: str
    acc: torch.Tensor
    best_acc: float
    best_src: int
    best_dst: int
    loss: torch.Tensor | None = None
    best_loss: float | None = None


def scan(evaluator: NeighbourEvaluator, batches, total: int | None = None, progress: bool = True,
         loss_temperature: float | None = None) -> Scan:
    """Evaluate every batch of swaps (e.g. ``iter_neighbours(...)``, the whole neighbourhood) and keep
    all accuracies (and losses, with ``loss_temperature``) and the best swap; memory stays at one
    batch plus 4 (or 8) bytes per neighbour."""
    accs, losses, best, best_fit = [], [], None, -math.inf
    layer = None
    for swaps in tqdm(batches, total=total, desc="neighbours", unit="batch", mininterval=10, disable=not progress):
        layer = swaps.layer
        if loss_temperature is None:
            a = fit = evaluator.evaluate(swaps, batch_size=len(swaps))
        else:
            a, loss = evaluator.evaluate(swaps, batch_size=len(swaps), loss_temperature=loss_temperature)
            fit = -loss
            losses.append(loss.float().cpu())
        i = int(fit.argmax())
        if fit[i].item() > best_fit:
            best_fit = fit[i].item()
            best = (a[i].item(), int(swaps.src[i]), int(swaps.dst[i]), None if loss_temperature is None else -best_fit)
        accs.append(a.float().cpu())
    if layer is None:
        raise ValueError("scan got no neighbours to evaluate")
    acc, src, dst, best_loss = best
    return Scan(layer, torch.cat(accs), acc, src, dst, torch.cat(losses) if losses else None, best_loss)


def naive_accuracy(model: nn.Module, data: Split, swaps: Swaps) -> torch.Tensor:
    """The reference: for each swap, copy the network, swap, full forward pass. Slow; for tests and
    the benchmark."""
    import copy

    from ..training import accuracy

    out = []
    for i in range(len(swaps)):
        net = copy.deepcopy(model)
        apply_swap(net, swaps.layer, swaps.src[i], swaps.dst[i])
        out.append(accuracy(net, data))
    return torch.tensor(out, dtype=torch.float64)


def neighbour_weight_vectors(model: nn.Module, layer: str, swaps: Swaps) -> torch.Tensor:
    """The layer's flattened ternary weights: row 0 the original, row i + 1 neighbour ``swaps[i]``
    (the embeddings of the architecture manifold are computed from these)."""
    t = sparse_layer(model, layer).ternary_values().flatten().detach().cpu().float()
    x = t.repeat(len(swaps) + 1, 1)
    rows = torch.arange(1, len(swaps) + 1)
    src, dst = swaps.src.cpu(), swaps.dst.cpu()
    x[rows, dst] = t[src]
    x[rows, src] = 0
    return x


@torch.no_grad()
def neighbour_output_vectors(model: nn.Module, layer: str, swaps: Swaps, x: torch.Tensor) -> torch.Tensor:
    """What each network does with the images ``x``: its softmax outputs on them, flattened (row 0
    the original, row i + 1 neighbour ``swaps[i]``; float32, on the CPU). Unlike the weight vectors,
    in which two neighbours of a large layer almost always lie at one and the same distance, these
    separate neighbours by how they change the network's answers."""
    from .swaps import undo_swap

    was_training = model.training
    model.eval()
    rows = [torch.softmax(model(x), dim=1).flatten().float().cpu()]
    for src, dst in zip(swaps.src.tolist(), swaps.dst.tolist()):
        saved = apply_swap(model, layer, src, dst)
        try:
            rows.append(torch.softmax(model(x), dim=1).flatten().float().cpu())
        finally:
            undo_swap(model, layer, src, dst, saved)
    model.train(was_training)
    return torch.stack(rows)


def distinct_distances(x: torch.Tensor, decimals: int = 4) -> tuple[int, float]:
    """How many distinct pairwise Euclidean distances the rows of ``x`` have (rounded to
    ``decimals``), and the share of pairs at the commonest one: 1 and 1.0 for points that all lie
    at the same distance from one another, which an embedding can only collapse."""
    d = torch.cdist(x.double(), x.double())
    iu = torch.triu_indices(len(x), len(x), offset=1)
    values, counts = torch.unique(torch.round(d[iu[0], iu[1]], decimals=decimals), return_counts=True)
    return len(values), float(counts.max()) / float(counts.sum())


def neighbour_summary(accs: dict, base_acc: float) -> dict:
    """Per layer: how many neighbours, the fractions better / equal / worse than the original, the
    mean change in points, the worst and the best accuracy (percent)."""
    out = {}
    for layer, a in accs.items():
        a = torch.as_tensor(a, dtype=torch.float64)
        out[layer] = {"neighbours": len(a), "better": float((a > base_acc).double().mean()),
                      "equal": float((a == base_acc).double().mean()), "worse": float((a < base_acc).double().mean()),
                      "mean change (points)": 100 * float((a - base_acc).mean()),
                      "worst (%)": 100 * float(a.min()), "best (%)": 100 * float(a.max())}
    return out
