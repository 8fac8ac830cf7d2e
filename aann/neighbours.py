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

**Images that no swap can flip.** In the output layer a swap moves at most two logits, by at most
$\alpha \max_u |h_u|$ each: an image whose top logit leads by more than twice that keeps its
prediction under every swap of the layer, so accuracies count it once rather than per neighbour
(``NeighbourEvaluator.certified_fraction()``: 98.7 % of MNIST's test images for a trained
90 %-sparse net, about 27 % for a random one). A looser bound does the same for the layer before
the output layer (87.6 % for that trained net).
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
from .models import has_batch_norm
from .pooling import is_plain_2x2, max_pool_2x2_values
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


def _evaluation_post(post: nn.Module):
    """A stage's ``post`` as a function, with plain 2x2 max-pooling done by ``max_pool_2x2_values``.

    HardTanh followed by max-pooling runs as pooling, then the clamp, in place: a clamp is
    monotone, so ``max(clamp(z)) == clamp(max(z))`` exactly (no arithmetic, only a choice), and
    the clamp then touches a quarter of the elements."""
    modules = list(post) if isinstance(post, nn.Sequential) else [post]
    steps, i = [], 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, nn.Hardtanh) and i + 1 < len(modules) and is_plain_2x2(modules[i + 1]):
            lo, hi = m.min_val, m.max_val
            steps += [max_pool_2x2_values, lambda x, lo=lo, hi=hi: x.clamp_(lo, hi)]  # on the pool's fresh output
            i += 2
            continue
        steps.append(max_pool_2x2_values if is_plain_2x2(m) else m)
        i += 1

    def run(x):
        for step in steps:
            x = step(x)
        return x

    return run


def _shrinks(post: nn.Module) -> bool:
    """Whether a stage's ``post`` moves no output by more than its inputs move (sup norm): HardTanh,
    ReLU, max-pooling, flattening."""
    modules = list(post) if isinstance(post, nn.Sequential) else [post]
    return all(isinstance(m, (nn.Hardtanh, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Identity)) for m in modules)


def _check_temperature(t) -> None:
    if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ValueError(f"the loss temperature must be a finite number > 0, got {t!r}")


def _cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""$\sum_i -\log \mathrm{softmax}(z_i / T)_{y_i}$ over the images of ``logits`` [B, n, classes]: [B]."""
    z = logits / temperature
    return (torch.logsumexp(z, -1) - z.gather(-1, y.view(1, -1, 1).expand(len(z), -1, 1)).squeeze(-1)).sum(-1)


class NeighbourEvaluator:
    """Accuracy (and logits) of many bit-swap neighbours of one network on a fixed data set.

    ``model`` must be a staged network (``model.stages()``, see ``aann.models``). The network is
    read once, at construction: change it afterwards and build a new evaluator. ``certify``: in
    the last two layers, count the images whose prediction no swap there can change once instead
    of once per neighbour (exact; see ``_uncertain``); False scores every image (for comparisons).
    """

    def __init__(self, model: nn.Module, data: Split, dtype=torch.float64, chunk_elems: int | None = None,
                 certify: bool = True):
        if not hasattr(model, "stages"):
            raise TypeError("NeighbourEvaluator needs a staged network (aann.models.StagedNet)")
        if has_batch_norm(model):  # its post would act on one channel as on a whole layer
            raise TypeError("NeighbourEvaluator needs a network without BatchNorm: evaluate "
                            "aann.models.fold_batch_norm(model), the same function with the norms folded in")
        self.stages = model.stages()
        self.post = [_evaluation_post(s.post) for s in self.stages]
        self.names = [s.name for s in self.stages]
        self.device = data.x.device
        self.dtype = dtype
        self.y = data.y
        # elements of one batched step: on a CPU small enough to stay in cache (the steps are
        # memory-bound there; 2**25 float64 = 256 MiB measured 4x slower than 2**20) but not so
        # small that a step's many small calls dominate (benchmarks/bench_sense_step.py, 2-core CPU:
        # 30 sampled neighbours of layer 1.0 on 2,000 images, 2**20 / 2**22 / 2**24 elements:
        # MNIST net 6.4 / 3.4 / 4.0 s, car net 4.9 / 2.6 / 1.9 s); on a GPU large (the same on an
        # H100, 2**24 / 2**25 / 2**26: MNIST net 0.167 / 0.084 / 0.049 s, car net 0.127 / 0.063 /
        # 0.034 s; results/bench/bench_sense_step_cuda.json). 2**26 float64 is 512 MiB a buffer:
        # pass a smaller chunk_elems on a GPU with little memory
        if chunk_elems is None:
            chunk_elems = 2**26 if self.device.type == "cuda" else 2**22
        self.chunk_elems = chunk_elems
        self._pad_cache: dict[int, torch.Tensor] = {}
        self._buffers: dict[str, torch.Tensor] = {}  # see _buffer
        self._top3_cache = None  # see _top3
        self._uncertain_cache: dict[int, tuple] = {}  # see _uncertain
        self.certify = certify  # count once the images no swap can flip (_uncertain); False: score all
        with torch.no_grad():
            self.weights = [s.layer.effective_weight().detach().to(dtype) for s in self.stages]
            self.biases = [None if s.layer.bias is None else s.layer.bias.detach().to(dtype) for s in self.stages]
            self.alpha = [s.layer.scale.detach().to(dtype) if bool(s.layer.is_ternary) else None for s in self.stages]
            self.ternary = [s.layer.ternary_values().to(self.device) for s in self.stages]
            # inputs a[k] and pre-activations z[k] of every stage, once
            self.a, self.z = [None] * len(self.stages), [None] * len(self.stages)
            self.a[0] = data.x.to(dtype)
            self._cache_from(0)

    def _cache_from(self, k: int) -> None:
        """Recompute the cached activations of stages k, k+1, ... from stage k's input a[k]."""
        a = self.a[k]
        for j in range(k, len(self.stages)):
            self.a[j] = a
            self.z[j] = _layer_op(self.stages[j].layer, a, self.weights[j], self.biases[j])
            a = self.post[j](self.z[j])
        self.logits = a
        self.base_correct = self._correct(a)

    @torch.no_grad()
    def apply_swap(self, layer: str, src: int, dst: int) -> None:
        """Move to the neighbour (src -> dst of ``layer``): update the cached weights and
        activations. The caller swaps the network itself with ``apply_swap(model, ...)``.

        In a hidden layer the caches are updated the way a neighbour is evaluated: the swapped
        layer's pre-activation in the (at most) two channels the swap touches, the next layer's by
        those channels' change, everything after that recomputed: a twentieth of a full recompute
        in the first layer of the MNIST net (``make bench``: 0.7-1.0 s against 16-19 s for a
        fresh evaluator on 10,000 images, on a 2-core CPU). The result equals a fresh
        evaluator's to rounding (float64; the same predictions, as for the neighbours), and it is
        *the same arithmetic* that scored the neighbour: the accuracy after a move is the one the
        move was chosen for."""
        k = self._swap_weights(layer, src, dst)
        if k + 1 == len(self.stages):
            self._cache_from(k)  # the output layer: one small matrix product

    @torch.no_grad()
    def follow(self, path) -> None:
        """Apply the moves ``(layer, src, dst)`` of ``path`` in order: the caches end bit for bit
        as after ``apply_swap`` of each (a resumed search replays its path so). A run of moves in
        the output layer is recomputed once, at its end: that layer's output depends only on its
        final weights."""
        last, pending = len(self.stages) - 1, False  # pending: output weights moved, not recomputed
        for layer, src, dst in path:
            if pending and layer != self.names[last]:
                self._cache_from(last)  # a hidden move reads the output layer's cached pre-activation
            k = self._swap_weights(layer, src, dst)
            pending = k == last  # a hidden move recomputes everything after it
        if pending:
            self._cache_from(last)

    def _index(self, layer: str) -> int:
        if layer not in self.names:
            raise UnknownLayerError(f"unknown layer {layer!r}; this model's layers are {', '.join(self.names)}")
        return self.names.index(layer)

    def _swap_weights(self, layer: str, src: int, dst: int) -> int:
        """Check the swap, update the hidden caches (a hidden layer) and the cached weights;
        return the stage index."""
        k = self._index(layer)
        t = self.ternary[k].view(-1)
        src, dst = int(src), int(dst)
        if t[src] == 0 or t[dst] != 0:
            raise ValueError(f"layer {layer}: a swap needs a nonzero src and a zero dst (src={src}, dst={dst})")
        if k + 1 < len(self.stages):
            self._move_hidden(k, Swaps(layer, torch.tensor([src]), torch.tensor([dst])))
        t[dst], t[src] = t[src].clone(), 0
        self.weights[k] = self.alpha[k] * self.ternary[k].to(self.dtype)  # alpha: per layer or per channel
        self._pad_cache = {}
        return k

    def _move_hidden(self, k: int, swap: Swaps) -> None:
        """The caches after one swap in hidden stage k (its weights not yet updated): z[k] in the
        touched channels, a[k+1] in those channels, z[k+1] by their change; then the rest."""
        out_ch, in_idx, delta = self._delta_weight_channels(k, swap)
        same = bool(out_ch[0, 0] == out_ch[0, 1])  # both weights in one channel: their changes add up
        ch = out_ch[0, :1] if same else out_ch[0]  # in the order of dz's rows
        # in place, chunk by chunk (each chunk reads only its own rows): no copies of the large
        # maps; the output layer's pre-activation may be the logits a caller holds, so it is copied
        z_k, a_next = self.z[k], self.a[k + 1]
        z_next = self.z[k + 1].clone() if k + 2 == len(self.stages) else self.z[k + 1]
        a_by_channel = a_next.view(len(self.y), z_k.shape[1], -1)  # a[k+1] may be flattened
        for r in self._image_chunks(3 * (z_next[0].numel() + 4 * self.z[k][0, 0].numel())):
            dz = self._dz(k, out_ch[0], in_idx[0], delta[0], r)  # [2, n, ...]
            dz = dz.sum(0, keepdim=True) if same else dz
            table = self._next_contribution(k, ch, dz, r)  # [len(ch) + 1, n, ...], last row zeros
            new = self._channel_output(k, ch, dz, r)  # [len(ch), n, per]
            z_next[r] = table[:len(ch)].sum(0) + z_next[r]
            for i, c in enumerate(ch.tolist()):
                z_k[r, c] += dz[i].view_as(z_k[r, c])
                a_by_channel[r, c] = new[i]
        self.z[k + 1] = z_next
        a = self.post[k + 1](z_next)
        if k + 2 < len(self.stages):
            self.a[k + 2] = a
            self._cache_from(k + 2)
        else:
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
                 progress: bool = False, loss_temperature: float | None = None):
        r"""Accuracy of every neighbour in ``swaps`` (a float64 tensor [B], on the evaluator's
        device). With ``loss_temperature`` $T$, also each neighbour's mean cross-entropy of
        $\mathrm{softmax}(z / T)$ on the labels ([B], see :meth:`base_loss`); with
        ``return_logits``, also the logits [B, N, classes] (memory grows with B * N). Returned in
        that order: ``acc``, ``(acc, loss)``, ``(acc, logits)`` or ``(acc, loss, logits)``."""
        k = self._index(swaps.layer)
        _check_temperature(loss_temperature)
        parts = []
        starts = range(0, len(swaps), batch_size)
        if progress:
            starts = tqdm(starts, desc=f"layer {swaps.layer}", unit="batch", mininterval=5)
        for start in starts:
            parts.append(self._evaluate_batch(k, swaps[start:start + batch_size], return_logits, loss_temperature))
        acc, loss, logits = (None if p[0] is None else torch.cat(p, dim=0) for p in zip(*parts))
        out = (acc,) + ((loss,) if loss_temperature is not None else ()) + ((logits,) if return_logits else ())
        return out if len(out) > 1 else acc

    def base_loss(self, temperature: float) -> float:
        r"""The network's mean cross-entropy of $\mathrm{softmax}(z / T)$ on the labels, computed as
        the neighbours' is (float64): SENSE's smooth fitness (``aann.sense``)."""
        _check_temperature(temperature)
        return (_cross_entropy_sum(self.logits.unsqueeze(0), self.y, temperature)[0] / len(self.y)).item()

    @torch.no_grad()
    def _evaluate_batch(self, k: int, swaps: Swaps, return_logits: bool, temperature: float | None = None):
        N = len(self.y)
        out_ch, in_idx, delta = self._delta_weight_channels(k, swaps)
        correct = torch.zeros(len(swaps), dtype=torch.long, device=self.device)
        output_layer = k + 1 == len(self.stages)
        accuracy_only = temperature is None and not return_logits
        # images whose prediction no swap here can change: counted once (accuracies only)
        rows, sure_correct = self._uncertain(k) if accuracy_only else (None, 0)
        correct += sure_correct
        if output_layer and accuracy_only:  # predictions suffice
            for r, pred in self._output_layer_predictions(k, out_ch, in_idx, delta, rows):
                correct += (pred == self.y[r]).sum(1)
            return correct.to(torch.float64) / N, None, None
        if output_layer:
            step = self._output_layer_steps(k, out_ch, in_idx, delta)
        else:
            step = self._hidden_layer_steps(k, swaps, out_ch, in_idx, delta, rows)
        loss = None if temperature is None else torch.zeros(len(swaps), dtype=self.dtype, device=self.device)
        all_logits = []
        for r, out in step:  # logits [B, n, classes] of every neighbour on the images r
            correct += (out.argmax(-1) == self.y[r]).sum(1)
            if loss is not None:
                loss += _cross_entropy_sum(out, self.y[r], temperature)
            if return_logits:
                all_logits.append(out)
        acc = correct.to(torch.float64) / N
        return acc, (None if loss is None else loss / N), (torch.cat(all_logits, 1) if return_logits else None)

    def _image_chunks(self, per_image: int, rows: torch.Tensor | None = None):
        """Slices of the evaluation set small enough that per_image * rows elements fit in
        chunk_elems (the memory of one batched step); with ``rows`` (an index tensor), chunks of
        those images' indices instead."""
        N = len(self.y) if rows is None else len(rows)
        n = max(1, min(N, self.chunk_elems // max(1, per_image)))
        chunks = [slice(r0, min(N, r0 + n)) for r0 in range(0, N, n)]
        return chunks if rows is None else [rows[c] for c in chunks]

    def _uncertain(self, k: int) -> tuple[torch.Tensor | None, int]:
        r"""The images whose prediction a swap in stage ``k`` might change (an index tensor; None:
        all of them), and how many of the *other* images the network classifies correctly (cached
        per network state). Certified are images whose top logit leads the next by more than any
        swap of the layer can move two logits; they are counted once instead of once per neighbour.

        *The output layer.* A swap moves $\pm\alpha_c$ from one input unit $u_0$ to another
        $u_1$: logit $c_0$ changes by $d_0 h_{u_0}$, logit $c_1$ by $d_1 h_{u_1}$ (one logit by
        both when $c_0 = c_1$), with $|d| \le \alpha_{\max}$ and $h$ the layer's input. With
        $D = \alpha_{\max} \max_u |h_u|$ no logit moves by more than $D$, or one by $2D$: a lead
        of more than $2D$ survives every swap. For a trained 90 %-sparse MNIST net that holds for
        98.7 % of the test images (its logits lead by several units), for a random one for 27 %.

        *The layer before it* (``2.0`` of the MNIST net, ``fc1.0`` of the car net). A swap changes
        the layer's pre-activation in two channels by at most $D$ per element ($D$ as above, from
        this layer's input), or one channel by $2D$; HardTanh and max-pooling move no output by
        more than their inputs move, so the output layer's input changes by at most that on the
        channels' units, and logit $c$ by at most $2D\,S_c$, $S_c$ the largest sum of $|W_{cu}|$
        over one channel's units $u$: a lead of more than $4 D \max_c S_c$ survives (90 % of
        the test images for the trained MNIST net).

        Either way a HardTanh after the output layer only shrinks changes, and the float64
        evaluation of a certified image keeps its prediction too: the lead demanded exceeds the
        bound by far more than the rounding of the sums involved."""
        cached = self._uncertain_cache.get(k)
        if cached is not None and cached[0] is self.logits:  # a move replaces the logits tensor
            return cached[1], cached[2]
        last = len(self.stages) - 1
        rows, sure_correct = None, 0
        if (self.certify and self.alpha[k] is not None and k >= last - 1
                and isinstance(self.stages[last].post, (nn.Identity, nn.Hardtanh))
                and (k == last or _shrinks(self.stages[k].post))):
            D = self.alpha[k].abs().max() * self.a[k].flatten(1).abs().amax(1)  # [N]
            if k == last:
                bound = 2 * D
            else:  # |W| summed over each input channel's units of the output layer: [classes, channels]
                w = self.weights[last].abs().view(self.weights[last].shape[0], self.z[k].shape[1], -1).sum(2)
                bound = 4 * D * w.amax()
            top_v, _ = self._top3()
            margin = top_v[:, 0] - top_v[:, 1]  # 0 on a tie: never certified
            # room for rounding: sums of up to fan_in terms, each below the largest logit plus the bound
            slack = 1e3 * self.weights[last].shape[1] * torch.finfo(self.dtype).eps * (self.logits.abs().amax(1) + bound + 1)
            sure = margin > bound + slack
            rows = (~sure).nonzero().squeeze(1)
            sure_correct = int((self.base_correct & sure).sum())
            if len(rows) == len(self.y):
                rows = None
        self._uncertain_cache[k] = (self.logits, rows, sure_correct)
        return rows, sure_correct

    def certified_fraction(self, layer: str | None = None) -> float:
        """The fraction of the images whose prediction no swap in ``layer`` (default: the output
        layer) can change: counted once, not scored per neighbour (see ``_uncertain``); 0 for a
        layer where no image is certified (those further from the output)."""
        k = len(self.stages) - 1 if layer is None else self._index(layer)
        rows, _ = self._uncertain(k)
        return 0.0 if rows is None else 1 - len(rows) / len(self.y)

    def _dz(self, k: int, ch, in_idx, delta, r) -> torch.Tensor:
        """Change of stage k's pre-activation in channel (unit) ch[m] when the weight (ch[m],
        in_idx[m]) changes by delta[m], for M single weight changes: [M, n, *channel shape]."""
        layer, a_in = self.stages[k].layer, self.a[k][r]
        n = a_in.shape[0]
        if isinstance(layer, nn.Conv2d):
            # a change e of weight (o, c, ky, kx) adds e * (a[:, c] shifted by (ky, kx)) to z[:, o]:
            # a gather from the zero-padded input, no convolution needed
            kh, kw = self.weights[k].shape[2:]
            cin, ky, kx = in_idx // (kh * kw), in_idx % (kh * kw) // kw, in_idx % kw
            padded = self._padded(k, r)  # [n, C, Hp, Wp]
            hp, wp = padded.shape[2:]
            h_out, w_out = self.z[k].shape[2:]
            sy, sx = layer.stride
            grid = (torch.arange(h_out, device=self.device)[:, None] * sy * wp
                    + torch.arange(w_out, device=self.device)[None, :] * sx).flatten()  # [H'W']
            # one gather over (channel, y, x) of each image: no per-weight copy of the input
            # channel, which is large where a strided layer's input dwarfs its output
            idx = (cin * (hp * wp) + ky * wp + kx)[:, None] + grid  # [M, H'W']
            x = padded.reshape(n, -1)  # [n, C*Hp*Wp]
            dz = torch.gather(x, 1, idx.view(1, -1).expand(n, -1)).view(n, len(ch), h_out * w_out) * delta[None, :, None]
            return dz.transpose(0, 1).reshape(len(ch), n, h_out, w_out)
        return (a_in[:, in_idx] * delta).T.unsqueeze(2)  # [M, n, 1]

    def _channel_output(self, k: int, ch, dz, r) -> torch.Tensor:
        """Stage k's output in channel ch[m] after adding dz[m] to its pre-activation: [M, n,
        features per channel]. The stage's post acts per channel, so it runs on the one channel as
        on a one-channel layer."""
        M, n = dz.shape[:2]
        z_old = self.z[k][r].transpose(0, 1)[ch]  # [M, n, *channel shape]
        if z_old.dim() == 2:  # a linear layer: a channel is one unit
            z_old = z_old.unsqueeze(2)
        return self.post[k]((z_old + dz).reshape(M * n, 1, *dz.shape[2:])).reshape(M, n, -1)

    def _output_units(self, k, out_ch, in_idx, delta, r) -> torch.Tensor:
        """The output layer swapped: the new values of the two logits a swap touches, [B, n, 2]
        on the images r (when both are one unit, slot 0 carries its final value)."""
        B = out_ch.shape[0]
        same = (out_ch[:, 0] == out_ch[:, 1])[:, None, None]  # both changes in one unit
        dz = self._dz(k, out_ch.flatten(), in_idx.flatten(), delta.flatten(), r)
        n = dz.shape[1]
        dz = dz.view(B, 2, n)
        dz = torch.where(same, torch.stack([dz.sum(1), dz[:, 1]], 1), dz)  # then slot 0 carries their sum
        a_new = self._channel_output(k, out_ch.flatten(), dz.reshape(B * 2, n, 1), r)
        return a_new.view(B, 2, n).transpose(1, 2)

    def _output_layer_predictions(self, k, out_ch, in_idx, delta, rows=None):
        """The output layer swapped, predictions only: the argmax of the new logits without
        building them. A swap changes two logits c0, c1; every other class keeps its value, so the
        best of the others is the first of the image's three largest logits (ordered by value,
        then index) that is neither c0 nor c1. The prediction is the best of that one and the two
        new values, ties going to the lower index as in ``argmax``: [B, n] per image chunk, from
        tensors of B * n elements instead of B * n * classes. ``rows``: the images to score (an
        index tensor; None: all), yielded in chunks as slices or index tensors."""
        B = out_ch.shape[0]
        top_v, top_i = self._top3()
        c0, c1 = out_ch[:, :1], out_ch[:, 1:]  # [B, 1]
        same = c0 == c1
        for r in self._image_chunks(B * 16, rows):
            v = self._output_units(k, out_ch, in_idx, delta, r)  # [B, n, 2]
            v0, v1 = v[..., 0], torch.where(same, v[..., 0], v[..., 1])  # one unit: slot 0 is final
            tv, ti = top_v[r], top_i[r]  # [n, 3]
            rest_v, rest_i = tv[:, 2], ti[:, 2]
            for j in (1, 0):  # the first of the top three not touched by the swap
                free = (ti[:, j] != c0) & (ti[:, j] != c1)  # [B, n]
                rest_v, rest_i = torch.where(free, tv[:, j], rest_v), torch.where(free, ti[:, j], rest_i)
            first = (v1 > v0) | ((v1 == v0) & (c1 < c0))
            best_v, best_i = torch.where(first, v1, v0), torch.where(first, c1, c0)
            rest = (rest_v > best_v) | ((rest_v == best_v) & (rest_i < best_i))
            yield r, torch.where(rest, rest_i, best_i)

    def _top3(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's three largest logits and their classes [N, 3], ordered as ``argmax`` ranks
        them (value, then lower index first); -inf and index = classes pad fewer than 3 classes."""
        cached = self._top3_cache
        if cached is None or cached[0] is not self.logits:  # a move replaces the logits tensor
            order = torch.sort(-self.logits, dim=1, stable=True).indices[:, :3]  # stable: ties by index
            values, pad = self.logits.gather(1, order), 3 - order.shape[1]
            if pad:
                values = F.pad(values, (0, pad), value=-math.inf)
                order = F.pad(order, (0, pad), value=self.logits.shape[1])
            self._top3_cache = cached = (self.logits, values, order)
        return cached[1], cached[2]

    def _output_layer_steps(self, k, out_ch, in_idx, delta):
        """The swapped layer is the output layer: only the two logits it touches change."""
        B = out_ch.shape[0]
        for r in self._image_chunks(B * self.logits.shape[1] * 4):
            n = r.stop - r.start
            a_new = self._output_units(k, out_ch, in_idx, delta, r)  # [B, n, 2]
            out = self.logits[r].unsqueeze(0).expand(B, n, -1).clone()
            idx = out_ch[:, None, :].expand(B, n, 2)
            out.scatter_(2, idx[:, :, 1:], a_new[:, :, 1:])  # slot 1 first: in the one-unit case
            out.scatter_(2, idx[:, :, :1], a_new[:, :, :1])  # slot 0 holds the final value
            yield r, out

    def _hidden_layer_steps(self, k, swaps, out_ch, in_idx, delta, rows=None):
        r"""A hidden layer: the swap changes stage k's output in at most two channels, and the next
        pre-activation by the next layer restricted to those channels. By linearity that change is
        the sum of one term per swapped weight,

        $\Delta z_{k+1} = W_{k+1}[:, o_s] \ast \Delta a_{o_s}(s) + W_{k+1}[:, o_d] \ast \Delta a_{o_d}(d, v)$,

        where the first depends only on the source weight and the second only on the destination
        and the value moved. Many swaps of a batch share those *endpoints*, so each term is computed
        once per distinct endpoint and the neighbours only add them up. Where both weights sit in
        one channel the HardTanh sees their sum, so that channel is computed jointly, per swap.
        ``rows``: the images to score (an index tensor; None: all)."""
        B = len(swaps)
        same = out_ch[:, 0] == out_ch[:, 1]
        split, joint = (~same).nonzero().squeeze(1), same.nonzero().squeeze(1)
        joint = joint[torch.sort(out_ch[joint, 0], stable=True).indices]  # by channel, as the endpoints
        # an endpoint is a weight and the signed value it receives: key = 2 * index + (delta > 0);
        # sorted keys are sorted by output channel (the weight's flat index is channel-major)
        flat = torch.stack([swaps.src, swaps.dst], 1).to(self.device)[split]
        keys, inv = torch.unique((2 * flat + (delta[split] > 0)).flatten(), return_inverse=True)
        U, S = len(keys), len(joint)
        first = torch.zeros(len(keys), dtype=torch.long, device=self.device)
        first.scatter_(0, inv, torch.arange(inv.numel(), device=self.device))  # an occurrence of each key
        e_ch, e_in, e_delta = (t[split].flatten()[first] for t in (out_ch, in_idx, delta))
        # rows of the contribution table: U endpoints, S joint swaps, and one row of zeros. A swap
        # adds two rows to the next pre-activation: its source endpoint's ("base") and its
        # destination's; a joint swap adds its own row to the zero row's base.
        zero = U + S
        base = torch.full((B,), zero, dtype=torch.long, device=self.device)
        other = torch.empty(B, dtype=torch.long, device=self.device)
        base[split], other[split] = inv.view(-1, 2)[:, 0], inv.view(-1, 2)[:, 1]
        other[joint] = U + torch.arange(S, device=self.device)
        # swaps sharing a base (a layer has few nonzero weights, so many swaps share a source)
        # are computed as base + rows: one gather and one add per neighbour instead of two of each
        order = torch.sort(base, stable=True).indices
        bases, counts = torch.unique_consecutive(base[order], return_counts=True)
        grouped = len(bases) * 8 <= B  # long runs; else gather both rows per swap
        groups = list(zip(bases.tolist(), torch.cumsum(counts, 0).tolist())) if grouped else []
        other_sorted = other[order]
        z_next = self.z[k + 1]
        width = z_next[0].numel()
        widest = max(z[0].numel() for z in self.z[k + 1:])
        channel = self.z[k][0, 0].numel()  # features of one channel of stage k (1 for a linear layer)
        for r in self._image_chunks((U + S + 1) * (width + 4 * channel), rows):
            zr = z_next[r]
            n = len(zr)
            dz = torch.cat([self._dz(k, e_ch, e_in, e_delta, r),
                            self._dz(k, out_ch[joint, 0], in_idx[joint, 0], delta[joint, 0], r)
                            + self._dz(k, out_ch[joint, 1], in_idx[joint, 1], delta[joint, 1], r)])
            table = self._next_contribution(k, torch.cat([e_ch, out_ch[joint, 0]]), dz, r)  # [U + S + 1, ...]
            sub = max(1, self.chunk_elems // (n * widest))
            out_sorted = torch.empty(B, n, self.logits.shape[1], dtype=self.dtype, device=self.device)

            def forward(b: slice, z: torch.Tensor) -> None:
                # copied out at once: the logits may be z itself (buffer memory, reused next step)
                out_sorted[b] = self._forward_from(k + 1, z.reshape(-1, *z_next.shape[1:])).view(z.shape[0], n, -1)

            if grouped:
                start = 0
                for p, stop in groups:
                    zb = table[p] + zr
                    for b0 in range(start, stop, sub):
                        b = slice(b0, min(stop, b0 + sub))
                        z = torch.index_select(table, 0, other_sorted[b], out=self._buffer("z", (b.stop - b0, *table.shape[1:])))
                        z += zb
                        forward(b, z)
                    start = stop
            else:
                base_sorted = base[order]
                for b0 in range(0, B, sub):
                    b = slice(b0, min(B, b0 + sub))
                    shape = (b.stop - b0, *table.shape[1:])
                    z = torch.index_select(table, 0, base_sorted[b], out=self._buffer("z", shape))
                    z += torch.index_select(table, 0, other_sorted[b], out=self._buffer("z_other", shape))
                    z += zr
                    forward(b, z)
            out = torch.empty_like(out_sorted)
            out[order] = out_sorted
            yield r, out

    def _buffer(self, name: str, shape) -> torch.Tensor:
        """Memory kept between image chunks for the large intermediates (the contribution table,
        the neighbours' pre-activations): a fresh allocation of many MiB per chunk is paid again
        in page faults at its first write (measured on the CPU: more than the convolutions that
        fill the table)."""
        numel = math.prod(shape)
        if name not in self._buffers or self._buffers[name].numel() < numel:
            self._buffers[name] = torch.empty(numel, dtype=self.dtype, device=self.device)
        return self._buffers[name][:numel].view(shape)

    def _next_contribution(self, k, ch, dz, r) -> torch.Tensor:
        """Change of stage k+1's pre-activation caused by dz[m] in stage k's channel ch[m] alone:
        [M + 1, n, *next pre-activation shape], the last row zeros (for swaps with one term)."""
        M, n = dz.shape[:2]
        a_old = self.a[k + 1][r].reshape(n, self.z[k].shape[1], -1).transpose(0, 1)[ch]  # [M, n, per]
        da = self._channel_output(k, ch, dz, r) - a_old
        per = da.shape[2]
        nxt, w_next = self.stages[k + 1].layer, self.weights[k + 1]
        if isinstance(nxt, nn.Conv2d):
            h, w = self.a[k + 1].shape[2:]
            out = self._buffer("table", (M + 1, n, *self.z[k + 1].shape[1:]))
            out[M] = 0
            # one convolution per run of endpoints in one input channel (the caller sorts them by
            # channel, so runs are long and the results land in contiguous slices)
            channels, counts = torch.unique_consecutive(ch, return_counts=True)
            start = 0
            for c, count in zip(channels.tolist(), counts.tolist()):
                m = slice(start, start + count)
                y = F.conv2d(da[m].reshape(-1, 1, h, w), w_next[:, c:c + 1], None, nxt.stride, nxt.padding)
                out[m] = y.view(count, n, *y.shape[1:])
                start += count
            return out
        # a linear layer after a flatten: channel c is input features c * per ... (c + 1) * per - 1
        cols = ch[:, None] * per + torch.arange(per, device=self.device)  # [M, per]
        out = self._buffer("table", (M + 1, n, w_next.shape[0]))
        out[M] = 0
        torch.bmm(da, w_next[:, cols].permute(1, 2, 0), out=out[:M])  # [M, n, C_out]
        return out

    def _forward_from(self, j: int, z: torch.Tensor) -> torch.Tensor:
        """Stage j's pre-activation z -> the network's logits."""
        a = self.post[j](z)
        for i in range(j + 1, len(self.stages)):
            a = self.post[i](_layer_op(self.stages[i].layer, a, self.weights[i], self.biases[i]))
        return a


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

    from .training import accuracy

    out = []
    for i in range(len(swaps)):
        net = copy.deepcopy(model)
        apply_swap(net, swaps.layer, swaps.src[i], swaps.dst[i])
        out.append(accuracy(net, data))
    return torch.tensor(out, dtype=torch.float64)


def neighbour_weight_vectors(model: nn.Module, layer: str, swaps: Swaps) -> torch.Tensor:
    """The layer's flattened ternary weights: row 0 the original, row i + 1 neighbour ``swaps[i]``
    (the embeddings of the architecture manifold are computed from these)."""
    t = get_layer(model, layer).ternary_values().flatten().detach().cpu().float()
    x = t.repeat(len(swaps) + 1, 1)
    rows = torch.arange(1, len(swaps) + 1)
    src, dst = swaps.src.cpu(), swaps.dst.cpu()
    x[rows, dst] = t[src]
    x[rows, src] = 0
    return x


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
