"""The exact neighbour evaluator: caches of one network's activations on a data set, moves that
update them, and the scores of many neighbours at once (see the package's docstring)."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm import tqdm

from ..data import Split
from ..models import has_batch_norm
from ..ternary import UnknownLayerError
from .certify import Certification
from .hidden_layers import HiddenLayerSwaps
from .output_layer import OutputLayerSwaps
from .stages import _check_temperature, _cross_entropy_sum, _evaluation_post, _layer_op
from .swaps import Swaps

__all__ = ["NeighbourEvaluator"]


class NeighbourEvaluator(Certification, OutputLayerSwaps, HiddenLayerSwaps):
    """Accuracy (and logits) of many bit-swap neighbours of one network on a fixed data set.

    ``model`` must be a staged network (``model.stages()``, see ``aann.models``). The network is
    read once, at construction: change it afterwards and build a new evaluator. ``certify``: in
    the last two layers, count the images whose prediction no swap there can change once instead
    of once per neighbour (exact; see ``_uncertain``); False scores every image (for comparisons).
    ``fuse``: score hidden-layer neighbours with one compiled loop (``aann.neighbours.fused``, the
    same results); None: on the CPU, for batches of at least ``FUSE_MIN_WORK`` neighbour-images.
    """

    def __init__(self, model: nn.Module, data: Split, dtype=torch.float64, chunk_elems: int | None = None,
                 certify: bool = True, fuse: bool | None = None):
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
        self.fuse = fuse  # score hidden-layer neighbours with one compiled loop (.fused); None: where it pays
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
