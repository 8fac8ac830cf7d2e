"""Top-k accuracy under many faults: the naive loop (a copy per fault) and the batched sweep that
evaluates many perturbed copies per forward pass without copying the network."""

from __future__ import annotations

import copy
import types
from collections import Counter, defaultdict
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data import Split
from ..metrics import top_k_hits
from .faults import Fault, fault_weights, layer_name, perturb, weight_layers

__all__ = ["topk_accuracy", "naive_sweep", "sweep"]



def _batches(data, batch_size: int):
    """(x, y) batches from a Split (sliced) or from any iterable of (x, y) (a DataLoader)."""
    if isinstance(data, Split):
        for i in range(0, len(data), batch_size):
            yield data.x[i:i + batch_size], data.y[i:i + batch_size]
    else:
        yield from data


@torch.inference_mode()
def topk_accuracy(model: nn.Module, data, topk=(1, 5), batch_size: int = 1000,
                  memory_format: torch.memory_format = torch.channels_last) -> np.ndarray:
    """Fractions of images whose label is among the top-k outputs, one per k; tied outputs rank by
    class index (:mod:`aann.metrics`). Image batches are laid out in ``memory_format`` (see
    :func:`sweep`)."""
    model.eval()
    hits, n = 0, 0
    for x, y in _batches(data, batch_size):
        x, y = _to_model(model, x, y, memory_format)
        hits = hits + top_k_hits(model(x), y, topk)
        n += len(y)
    return (torch.as_tensor(hits).cpu().double() / n).numpy()


def _to_model(model, x, y, memory_format: torch.memory_format = torch.contiguous_format):
    """The batch on the model's device; image batches (4-D) laid out in ``memory_format``."""
    device = next(model.parameters()).device
    x = x.to(device, non_blocking=True)
    if x.dim() == 4:
        x = x.contiguous(memory_format=memory_format)
    return x, y.to(device, non_blocking=True)


def naive_sweep(model: nn.Module, data, faults: list[Fault], topk=(1, 5), seed: int = 0,
                batch_size: int = 128, memory_format: torch.memory_format = torch.channels_last,
                progress: bool = False) -> np.ndarray:
    """The reference loop: per fault, deep-copy the network, perturb the copy, full evaluation
    (:func:`topk_accuracy`). (len(faults), len(topk)) accuracies."""
    out = np.zeros((len(faults), len(topk)))
    for i, fault in enumerate(tqdm(faults, desc="faults (naive)", disable=not progress, mininterval=5)):
        net = copy.deepcopy(model)
        with perturb(net, fault, seed):
            out[i] = topk_accuracy(net, data, topk, batch_size, memory_format)
    return out


def _stacked_forward(layer: nn.Module, weights: torch.Tensor, biases: torch.Tensor | None):
    """A forward for ``layer`` that returns its output for K weight sets, stacked copy-major:
    input (n, ...) -> output (K * n, ...), rows [k*n:(k+1)*n] computed with weight set k."""
    K, out_units = weights.shape[0], weights.shape[1]
    flat_w = weights.reshape(K * out_units, *weights.shape[2:])  # used by Linear only
    flat_b = None if biases is None else biases.reshape(-1)

    def forward(self, x):
        n = x.shape[0]
        if isinstance(self, nn.Conv2d) and K == 1:
            return self._conv_forward(x, weights[0], None if biases is None else biases[0])
        if isinstance(self, nn.Conv2d):
            # one convolution per copy, concatenated along the batch: measured faster on a CPU than
            # one convolution with K times the channels followed by a transpose (benchmarks/)
            return torch.cat([self._conv_forward(x, weights[k], None if biases is None else biases[k])
                              for k in range(K)])
        y = torch.nn.functional.linear(x, flat_w, flat_b)  # (n, ..., K * out): one matrix product
        y = y.view(*y.shape[:-1], K, out_units).movedim(-2, 0)  # (K, n, ..., out)
        return y.reshape(K * n, *y.shape[2:])

    return forward


def _knocked_out_forward(clean: torch.Tensor, keep: torch.Tensor, unit_dim: int):
    """A forward for a node knockout that computes nothing: the layer's clean output on this batch,
    ``clean``, K times, stacked copy-major as :func:`_stacked_forward` stacks them, copy k with the
    units where ``keep[k]`` is False set to 0. A unit without weights and bias outputs exactly 0
    and every other unit keeps its weights, hence its clean output: the layer's share of the pass is
    saved (the same convolution shape, so the same kernels and the same rounding)."""
    shape = [1] * clean.dim()
    shape[unit_dim] = -1

    def forward(self, x):
        return torch.cat([torch.where(k.view(shape), clean, 0.0) for k in keep])  # keeps the memory format

    return forward


def _kept_units(weights: torch.Tensor, biases: torch.Tensor | None) -> torch.Tensor:
    """(K, units) bool: False where copy k's unit has no weight and no bias left (knocked out)."""
    alive = weights.flatten(2).ne(0).any(-1)
    return alive if biases is None else alive | biases.ne(0)


def _output_sizes(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Elements per image of every weight layer's output (one forward of one image)."""
    sizes, handles = {}, []
    for name, layer in weight_layers(model).items():
        handles.append(layer.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o[0].numel())))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return sizes


@contextmanager
def _patched(layer: nn.Module, forward):
    """``layer`` runs ``forward`` (a :func:`_stacked_forward` or :func:`_knocked_out_forward`)."""
    layer.forward = types.MethodType(forward, layer)
    try:
        yield
    finally:
        del layer.forward  # back to the class's forward


class _PrefixMemo:
    """The shared prefix of a sweep. ``record`` runs the clean network once on a batch and keeps
    every leaf module's output and the order of the calls; inside ``skipping_before(layer)`` the
    leaves that ran before ``layer`` (once each) return those outputs instead of computing, so a
    pass that perturbs ``layer`` costs only the network from ``layer`` on, whatever the model's
    ``forward`` looks like. Leaves called more than once per forward are always computed."""

    def __init__(self, model: nn.Module):
        self.leaves = {name: m for name, m in model.named_modules() if name and not any(True for _ in m.children())}
        self.outputs: dict[str, torch.Tensor] = {}
        self.copies: dict[str, torch.Tensor] = {}
        self.order: list[str] = []

    def record(self, model: nn.Module, x: torch.Tensor, keep_copies: frozenset = frozenset()) -> torch.Tensor:
        """The clean pass; the outputs of the leaves named in ``keep_copies`` are also kept as copies,
        safe from any in-place operation that follows them (an in-place activation)."""
        self.outputs, self.copies, self.order = {}, {}, []

        def save(name, output):
            self.order.append(name)
            self.outputs[name] = output
            if name in keep_copies and isinstance(output, torch.Tensor):
                self.copies[name] = output.clone()

        hooks = [m.register_forward_hook(lambda mod, i, o, name=name: save(name, o)) for name, m in self.leaves.items()]
        try:
            return model(x)
        finally:
            for h in hooks:
                h.remove()

    def clean_output(self, layer: str) -> torch.Tensor | None:
        """The copy of the layer's output in the clean pass, if it was asked for and the layer ran
        once."""
        return self.copies.get(layer) if self.order.count(layer) == 1 else None

    @contextmanager
    def skipping_before(self, layer: str):
        calls = Counter(self.order)
        first = self.order.index(layer) if layer in calls else 0
        skip = [name for name in self.order[:first] if calls[name] == 1]
        for name in skip:
            self.leaves[name].forward = lambda *args, _out=self.outputs[name], **kwargs: _out
        try:
            yield
        finally:
            for name in skip:
                del self.leaves[name].forward


@torch.inference_mode()
def sweep(model: nn.Module, data, faults: list[Fault], topk=(1, 5), seed: int = 0,
          batch_size: int = 128, copies_per_pass: int | None = None, max_activation_elements: int = 1 << 22,
          max_weight_bytes: int = 1 << 28, memory_format: torch.memory_format = torch.channels_last,
          progress: bool = True) -> np.ndarray:
    """Top-k accuracy of ``model`` under every fault, without copying the model. Tied outputs (a
    node knockout of the output layer gives many) rank by class index, as ``argmax`` does
    (:mod:`aann.metrics`).

    Returns an array (len(faults), len(topk)); row i equals ``naive_sweep``'s (same draws), up to
    float rounding in the batched products. ``data``: a Split (cut into ``batch_size`` images) or an
    iterable of (x, y) batches, read once. Per batch, the clean network runs once and every leaf
    module's output is kept; a pass that perturbs layer L replays the leaves before L from that
    record (``_PrefixMemo``) and computes only from L on; a node knockout of L reuses L's recorded
    output (a copy taken in the clean pass) with its units zeroed. Per batch of n images and per layer, faults go through in
    groups of K copies, as many as keep the layer's stacked output within ``max_activation_elements``
    (and at most ``copies_per_pass``, and at most ``max_weight_bytes`` of perturbed weights): the
    shared prefix pays off for upper layers, while for the first layers, whose output is large and
    which share nothing, bigger passes only spill out of the CPU caches (benchmarks/). Faults of amount 0 are the unperturbed model: it is
    evaluated once for all of them.

    Image batches are laid out in ``memory_format``: channels-last halves the time of the CIFAR-10
    nets' forward on a CPU (oneDNN's convolutions and max-pooling run on that layout) and leaves the
    MNIST net's unchanged. A layout changes float rounding only; ``naive_sweep`` with the same
    layout gives the same accuracies.
    """
    model.eval()
    if not faults:
        raise ValueError("faults is empty")
    layers = weight_layers(model)
    by_layer = defaultdict(list)  # by module name (a fault may name a sparse layer as the paper does)
    for i, f in enumerate(faults):
        name = layer_name(model, f.layer)  # raises, naming the allowed layers
        if not f.is_identity:
            by_layer[name].append(i)
    identity = [i for i, f in enumerate(faults) if f.is_identity]
    node_layers = frozenset(name for name, idx in by_layer.items() for i in idx
                            if faults[i].treatment == "node_knockout")
    # the perturbed weights are drawn once, up front (on the CPU, from each fault's own seed)
    weights = {i: fault_weights(model, faults[i], seed) for idx in by_layer.values() for i in idx}
    device = next(model.parameters()).device
    kept = {i: _kept_units(w[None], None if b is None else b[None])[0].to(device)  # node knockouts' units
            for i, (w, b) in weights.items() if faults[i].treatment == "node_knockout"}
    memo = _PrefixMemo(model)
    stacks, stacked_bytes = {}, 0  # (layer, the group's faults) -> their stacked weights, on the device
    hits = torch.zeros(len(faults), len(topk), dtype=torch.long, device=device)
    n_seen, out_size = 0, None
    n_batches = -(-len(data) // batch_size) if isinstance(data, Split) else (len(data) if hasattr(data, "__len__") else None)
    total = None if n_batches is None else n_batches * sum(map(len, by_layer.values()))
    bar = tqdm(desc="perturbed copies x image batches", total=total, disable=not progress, mininterval=5)
    for x, y in _batches(data, batch_size):
        x, y = _to_model(model, x, y, memory_format)
        n = len(y)
        n_seen += n
        if out_size is None:
            out_size = _output_sizes(model, x[:1])
        clean = memo.record(model, x, node_layers)
        if identity:
            hits[identity] += top_k_hits(clean, y, topk)
        for name, idx in by_layer.items():
            layer = layers[name]
            w0 = weights[idx[0]][0]
            per_copy = w0.numel() * w0.element_size()
            k_max = max(1, min(max_activation_elements // (n * out_size[name]), max_weight_bytes // max(per_copy, 1)))
            if copies_per_pass is not None:
                k_max = max(1, min(k_max, copies_per_pass))
            # node knockouts need not compute the layer: its clean output with units zeroed (in
            # groups of their own, so that a group is all of one kind)
            clean_out = memo.clean_output(name)
            nodes = {i for i in idx if faults[i].treatment == "node_knockout"} if clean_out is not None else set()
            kinds = ([i for i in idx if i in nodes], [i for i in idx if i not in nodes])
            for group in [kind[j:j + k_max] for kind in kinds for j in range(0, len(kind), k_max)]:
                if group[0] in nodes:  # the knocked-out units' masks, not the weights
                    forward = _knocked_out_forward(clean_out, torch.stack([kept[i] for i in group]),
                                                   1 if isinstance(layer, nn.Conv2d) else -1)
                else:
                    key = (name, tuple(group))
                    w, b = stacks.get(key) or (
                        torch.stack([weights[i][0] for i in group]).to(device),
                        None if layer.bias is None else torch.stack([weights[i][1] for i in group]).to(device))
                    if key not in stacks and stacked_bytes + per_copy * len(group) <= max_weight_bytes:
                        stacks[key] = (w, b)  # the same groups recur batch after batch: stack them once
                        stacked_bytes += per_copy * len(group)
                    forward = _stacked_forward(layer, w, b)
                with memo.skipping_before(name), _patched(layer, forward):
                    try:
                        out = model(x)
                    except RuntimeError as err:
                        raise RuntimeError(
                            f"batched evaluation of layer {name!r} failed ({err}); its output must flow to the "
                            "logits image by image (no skip connection around it): pass copies_per_pass=1") from err
                hits[group] += top_k_hits(out.view(len(group), n, -1), y, topk)
                bar.update(len(group))
    bar.close()
    return (hits.cpu().double() / n_seen).numpy()
