r"""Bit-swap neighbours of a sparse ternary network, and their exact, fast evaluation.

A **bit-swap** in layer $L$ moves the value $v = t_s \in \{-1, +1\}$ of a nonzero weight $s$ to a
zero weight $d$ of the same layer: $t'_s = 0$, $t'_d = v$. The layer keeps its counts of $-1$, $0$
and $+1$ (the network's *family*). The first neighbours of a network are all $n_{\neq 0} \cdot
n_{0}$ single swaps of a layer; $k$-th neighbours are $k$ swaps away.

**Evaluating a neighbour without a forward pass.** With $W = \alpha t$, a swap changes the layer's
weight by $\Delta W = \alpha v\,(e_d - e_s)$: two entries, in at most two output channels (or
units) $o_s, o_d$. By linearity the layer's pre-activation changes by $\Delta z = \Delta W * a$,
only in those channels. The stage's HardTanh and pooling act per channel, so only two channels of
its output change, and the *next* layer's pre-activation changes by the next weight restricted to
those two input channels applied to that change. From there on, everything is recomputed, batched
over many neighbours at once. The activations before the swapped layer and the pre-activations of
the swapped and the next layer are cached once per network. Arithmetic is float64 by default, so
the predictions equal those of a float64 forward pass of the swapped network (a float32 forward
can differ from itself by rounding on near-ties; float64 leaves ties only where they are exact, as
at the HardTanh clamp, and those come out the same).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import Split
from .ternary import SparseTernaryMixin, UnknownLayerError, get_layer


@dataclass
class Swaps:
    """A batch of bit-swaps of one layer: flat weight indices ``src`` (nonzero) and ``dst`` (zero)."""

    layer: str
    src: torch.Tensor  # int64, flat indices into the layer's weight
    dst: torch.Tensor

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i) -> "Swaps":
        if isinstance(i, int):
            i = slice(i, i + 1)
        return Swaps(self.layer, self.src[i], self.dst[i])


def _positions(layer: SparseTernaryMixin) -> tuple[torch.Tensor, torch.Tensor]:
    t = layer.ternary_values().flatten().cpu()
    return (t != 0).nonzero().squeeze(1), (t == 0).nonzero().squeeze(1)


def _swappable(model: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    nonzero, zero = _positions(get_layer(model, name))
    if len(nonzero) == 0 or len(zero) == 0:
        raise ValueError(
            f"layer {name} has {len(nonzero)} nonzero and {len(zero)} zero weights; a bit-swap needs "
            "at least one of each (sparsity strictly between 0 and 100 %)"
        )
    return nonzero, zero


def neighbourhood_size(model: nn.Module, layer: str) -> int:
    """The number of first neighbours through ``layer``: nonzero weights times zero weights."""
    nonzero, zero = _swappable(model, layer)
    return len(nonzero) * len(zero)


def sample_neighbours(model: nn.Module, layer: str, n: int, seed: int = 0) -> Swaps:
    """``n`` distinct first neighbours through ``layer``, drawn uniformly without replacement."""
    nonzero, zero = _swappable(model, layer)
    size = len(nonzero) * len(zero)
    if not 0 < n <= size:
        raise ValueError(f"layer {layer} has {size} first neighbours; asked for {n} (allowed: 1 to {size})")
    # random.sample draws from a range lazily, without materialising all n_nonzero * n_zero pairs
    k = torch.tensor(random.Random(seed).sample(range(size), n), dtype=torch.long)
    return Swaps(layer, nonzero[k // len(zero)], zero[k % len(zero)])


def iter_neighbours(model: nn.Module, layer: str, batch_size: int = 4096) -> Iterator[Swaps]:
    """Every first neighbour through ``layer``, lazily, ``batch_size`` at a time (nonzero-major)."""
    nonzero, zero = _swappable(model, layer)
    size = len(nonzero) * len(zero)
    for start in range(0, size, batch_size):
        k = torch.arange(start, min(start + batch_size, size))
        yield Swaps(layer, nonzero[k // len(zero)], zero[k % len(zero)])


@torch.no_grad()
def apply_swap(model: nn.Module, layer: str, src: int, dst: int) -> tuple[float, float]:
    """Move the nonzero weight ``src`` of ``layer`` to the zero position ``dst``; returns what
    ``undo_swap`` needs to restore the network bit for bit."""
    lay = get_layer(model, layer)
    w, m = lay.weight.view(-1), lay.mask.view(-1)
    src, dst = int(src), int(dst)
    if not bool(m[src]) or bool(m[dst]):
        raise ValueError(f"layer {layer}: a swap needs a nonzero src and a zero dst (src={src}, dst={dst})")
    saved = (w[src].item(), w[dst].item())
    w[dst], w[src] = w[src].clone(), 0.0
    m[dst], m[src] = True, False
    return saved


@torch.no_grad()
def undo_swap(model: nn.Module, layer: str, src: int, dst: int, saved: tuple[float, float]) -> None:
    lay = get_layer(model, layer)
    w, m = lay.weight.view(-1), lay.mask.view(-1)
    w[int(src)], w[int(dst)] = saved
    m[int(src)], m[int(dst)] = True, False


# ----------------------------------------------------------------------------------------------
# Exact fast evaluation


def _layer_op(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """The layer's linear map with another weight (conv or linear)."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, weight, bias)


class NeighbourEvaluator:
    """Accuracy (and logits) of many bit-swap neighbours of one network on a fixed data set.

    ``model`` must be a staged network (``model.stages()``, see ``aann.models``). The network is
    read once, at construction: change it afterwards and build a new evaluator.
    """

    def __init__(self, model: nn.Module, data: Split, dtype=torch.float64, chunk_elems: int = 2**25):
        if not hasattr(model, "stages"):
            raise TypeError("NeighbourEvaluator needs a staged network (aann.models.StagedNet)")
        self.stages = model.stages()
        self.names = [s.name for s in self.stages]
        self.device = data.x.device
        self.dtype = dtype
        self.y = data.y
        self.chunk_elems = chunk_elems  # bounds the memory of one batched step
        self._pad_cache: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            self.weights = [s.layer.effective_weight().detach().to(dtype) for s in self.stages]
            self.biases = [None if s.layer.bias is None else s.layer.bias.detach().to(dtype) for s in self.stages]
            self.alpha = [s.layer.scale.detach().to(dtype) if bool(s.layer.is_ternary) else None for s in self.stages]
            self.ternary = [s.layer.ternary_values().to(self.device) for s in self.stages]
            # inputs a[k] and pre-activations z[k] of every stage, once
            self.a, self.z = [], []
            a = data.x.to(dtype)
            for k, s in enumerate(self.stages):
                self.a.append(a)
                z = _layer_op(s.layer, a, self.weights[k], self.biases[k])
                self.z.append(z)
                a = s.post(z)
            self.logits = a
            self.base_correct = self._correct(a)

    def _padded(self, k: int, r: slice) -> torch.Tensor:
        """Stage k's input, zero-padded as its convolution pads it (cached per stage)."""
        if k not in self._pad_cache:
            layer = self.stages[k].layer
            if layer.dilation != (1, 1) or layer.groups != 1 or layer.padding_mode != "zeros":
                raise NotImplementedError("the neighbour evaluator supports plain convolutions only")
            ph, pw = layer.padding
            self._pad_cache = {k: F.pad(self.a[k], (pw, pw, ph, ph))}  # one layer at a time: memory
        return self._pad_cache[k][r]

    def _correct(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1) == self.y

    @property
    def base_accuracy(self) -> float:
        """The original network's accuracy, computed exactly as the neighbours' (float64 count / N),
        so that a neighbour with the same number of correct images compares equal."""
        return (self.base_correct.sum().to(torch.float64) / len(self.y)).item()

    def _delta_weight_channels(self, k: int, swaps: Swaps):
        """For each swap: the two output channels it touches and the two weight changes, as
        (out_channel [B, 2], in_index [B, 2] (channel, ky, kx) or unit, delta [B, 2])."""
        if self.alpha[k] is None:
            raise ValueError(f"layer {self.names[k]} is not ternary; neighbours are defined on ternary networks")
        shape = self.weights[k].shape
        idx = torch.stack([swaps.src, swaps.dst], 1).to(self.device)  # [B, 2]
        v = self.ternary[k].flatten()[swaps.src.to(self.device)].to(self.dtype)  # value that moves
        if (v == 0).any() or (self.ternary[k].flatten()[swaps.dst.to(self.device)] != 0).any():
            raise ValueError(f"layer {self.names[k]}: every swap needs a nonzero src and a zero dst")
        per_out = math.prod(shape[1:])
        out_ch = idx // per_out
        alpha = self.alpha[k]  # one scale per layer, or one per output channel
        alpha = alpha.expand(2) if alpha.dim() == 0 else alpha.flatten()[out_ch]
        delta = torch.stack([-v, v], 1) * alpha  # [B, 2]
        return out_ch, idx % per_out, delta

    def evaluate(self, swaps: Swaps, return_logits: bool = False, batch_size: int = 256,
                 progress: bool = False):
        """Accuracy of every neighbour in ``swaps`` (a float64 tensor [B], on the evaluator's
        device); with ``return_logits``, also the logits [B, N, classes] (memory grows with B * N)."""
        if swaps.layer not in self.names:
            raise UnknownLayerError(f"unknown layer {swaps.layer!r}; this model's layers are {', '.join(self.names)}")
        k = self.names.index(swaps.layer)
        accs, logits = [], []
        starts = range(0, len(swaps), batch_size)
        if progress:
            starts = tqdm(starts, desc=f"layer {swaps.layer}", unit="batch", mininterval=5)
        for start in starts:
            acc, out = self._evaluate_batch(k, swaps[start:start + batch_size], return_logits)
            accs.append(acc)
            if return_logits:
                logits.append(out)
        acc = torch.cat(accs)
        return (acc, torch.cat(logits)) if return_logits else acc

    @torch.no_grad()
    def _evaluate_batch(self, k: int, swaps: Swaps, return_logits: bool):
        B, N = len(swaps), len(self.y)
        out_ch, in_idx, delta = self._delta_weight_channels(k, swaps)
        # images per step, so that B * rows * (widest activation from here on) stays under chunk_elems
        widest = max(z[0].numel() for z in self.z[k:])
        rows = max(1, min(N, self.chunk_elems // (B * widest)))
        correct = torch.zeros(B, dtype=torch.long, device=self.device)
        all_logits = []
        for r0 in range(0, N, rows):
            r = slice(r0, min(N, r0 + rows))
            a_new, a_old = self._touched_channels(k, out_ch, in_idx, delta, r)
            out = self._logits(k, out_ch, a_new, a_old, r)  # [B, n, classes]
            correct += (out.argmax(-1) == self.y[r]).sum(1)
            if return_logits:
                all_logits.append(out)
        acc = correct.to(torch.float64) / N
        return acc, (torch.cat(all_logits, 1) if return_logits else None)

    def _touched_channels(self, k, out_ch, in_idx, delta, r):
        """Stage k's output in the two channels (units) each swap touches, after and before the
        swap: two tensors [B, n, 2, features per channel]."""
        layer, a_in, z = self.stages[k].layer, self.a[k][r], self.z[k][r]
        B, n = out_ch.shape[0], a_in.shape[0]
        if isinstance(layer, nn.Conv2d):
            # a change e of weight (o, c, ky, kx) adds e * (a[:, c] shifted by (ky, kx)) to z[:, o]:
            # a gather from the zero-padded input, no convolution needed
            kh, kw = self.weights[k].shape[2:]
            cin, ky, kx = in_idx // (kh * kw), in_idx % (kh * kw) // kw, in_idx % kw
            padded = self._padded(k, r)  # [n, C, Hp, Wp]
            hp, wp = padded.shape[2:]
            h_out, w_out = z.shape[2:]
            sy, sx = layer.stride
            grid = (torch.arange(h_out, device=self.device)[:, None] * sy * wp
                    + torch.arange(w_out, device=self.device)[None, :] * sx).flatten()  # [H'W']
            idx = (ky.flatten() * wp + kx.flatten())[:, None] + grid  # [B*2, H'W']
            x = padded.flatten(2)[:, cin.flatten()]  # [n, B*2, Hp*Wp]
            dz = torch.gather(x, 2, idx.unsqueeze(0).expand(n, -1, -1)) * delta.flatten()[None, :, None]
            dz = dz.view(n, B, 2, h_out, w_out).transpose(0, 1)  # [B, n, 2, H', W']
        else:
            dz = a_in[:, in_idx.flatten()].view(n, B, 2).transpose(0, 1) * delta[:, None, :]  # [B, n, 2]
        # when both changes fall in one channel, slot 0 carries their sum and slot 1 nothing
        same = (out_ch[:, 0] == out_ch[:, 1]).view(B, *([1] * (dz.dim() - 1)))
        dz = torch.where(same, torch.cat([dz.sum(2, keepdim=True), torch.zeros_like(dz[:, :, :1])], 2), dz)
        z_old = z.transpose(0, 1)[out_ch.flatten()]  # [B*2, n, ...]
        z_old = z_old.view(B, 2, *z_old.shape[1:]).transpose(1, 2)  # [B, n, 2, ...]
        post = self.stages[k].post  # acts per channel: run it on the 2 channels as a 2-channel layer
        a_new = post((z_old + dz).reshape(B * n, 2, *z_old.shape[3:]))
        a_old = post(z_old.reshape(B * n, 2, *z_old.shape[3:]))
        return a_new.reshape(B, n, 2, -1), a_old.reshape(B, n, 2, -1)

    def _logits(self, k, out_ch, a_new, a_old, r):
        """Logits [B, n, classes] of every neighbour, from the change in stage k's output."""
        B, n = a_new.shape[:2]
        if k + 1 == len(self.stages):  # the swapped layer is the output layer: 2 logits change
            out = self.logits[r].unsqueeze(0).expand(B, n, -1).clone()
            idx = out_ch[:, None, :].expand(B, n, 2)
            out.scatter_(2, idx[:, :, 1:], a_new[:, :, 1:, 0])  # slot 1 first: in the one-channel
            out.scatter_(2, idx[:, :, :1], a_new[:, :, :1, 0])  # case slot 0 has the final value
            return out
        da = a_new - a_old  # [B, n, 2, per]
        nxt, w_next = self.stages[k + 1].layer, self.weights[k + 1]
        c_out = w_next.shape[0]
        if isinstance(nxt, nn.Conv2d):
            # the next conv restricted, per swap, to the 2 input channels that changed:
            # unfold the change into patches and multiply by those 2 channels' weights (one GEMM per swap)
            h, w = self.a[k + 1].shape[2:]
            kh, kw = w_next.shape[2:]
            patches = F.unfold(da.reshape(B * n, 2, h, w), (kh, kw), padding=nxt.padding, stride=nxt.stride)
            patches = patches.view(B, n, 2 * kh * kw, -1)  # [B, n, 2*kh*kw, L]
            wk = w_next[:, out_ch.flatten()].view(c_out, B, 2, kh, kw).transpose(0, 1).reshape(B, 1, c_out, 2 * kh * kw)
            h_out, w_out = self.z[k + 1].shape[2:]
            dz = torch.matmul(wk, patches).view(B, n, c_out, h_out, w_out)
        else:
            # flattened channels: channel c is input features c * per ... (c + 1) * per - 1
            per = da.shape[3]
            cols = (out_ch[:, :, None] * per + torch.arange(per, device=self.device)).reshape(B, 2 * per)
            dz = torch.bmm(da.reshape(B, n, 2 * per), w_next[:, cols].permute(1, 2, 0))  # [B, n, C_out]
        z = self.z[k + 1][r].unsqueeze(0) + dz
        a = self.stages[k + 1].post(z.reshape(B * n, *z.shape[2:]))
        for j in range(k + 2, len(self.stages)):
            s = self.stages[j]
            a = s.post(_layer_op(s.layer, a, self.weights[j], self.biases[j]))
        return a.view(B, n, -1)


@dataclass
class Scan:
    """Accuracies of many neighbours of one layer (float32, on the CPU, in the order scanned) and
    the best of them (the first one, on ties)."""

    layer: str
    acc: torch.Tensor
    best_acc: float
    best_src: int
    best_dst: int


def scan(evaluator: NeighbourEvaluator, batches, total: int | None = None, progress: bool = True) -> Scan:
    """Evaluate every batch of swaps (e.g. ``iter_neighbours(...)``, the whole neighbourhood) and keep
    all accuracies and the best swap; memory stays at one batch plus 4 bytes per neighbour."""
    accs, best = [], (-1.0, -1, -1)
    layer = None
    for swaps in tqdm(batches, total=total, desc="neighbours", unit="batch", mininterval=10, disable=not progress):
        layer = swaps.layer
        a = evaluator.evaluate(swaps, batch_size=len(swaps))
        i = int(a.argmax())
        if a[i].item() > best[0]:
            best = (a[i].item(), int(swaps.src[i]), int(swaps.dst[i]))
        accs.append(a.float().cpu())
    if layer is None:
        raise ValueError("scan got no neighbours to evaluate")
    return Scan(layer, torch.cat(accs), *best)


def naive_accuracy(model: nn.Module, data: Split, swaps: Swaps) -> torch.Tensor:
    """The reference: for each swap, copy the network, swap, full forward pass. Slow; for tests and
    the benchmark."""
    import copy

    from .training import accuracy

    out = []
    for i in range(len(swaps)):
        net = copy.deepcopy(model)
        apply_swap(net, swaps.layer, swaps.src[i], swaps.dst[i])
        out.append(accuracy(net, data))
    return torch.tensor(out, dtype=torch.float64)
