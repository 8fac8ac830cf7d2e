"""A swap of a hidden layer: the change of two channels, carried into the next layer as a sum of one
term per swapped weight, then the rest of the network for many neighbours at once."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fused import fused_gathered_tail, fusing_batch, pool_major, pool_major_view, tail_spec
from .stages import _layer_op

__all__ = ["HiddenLayerSwaps"]


class HiddenLayerSwaps:
    """The part of :class:`~aann.neighbours.NeighbourEvaluator` that scores swaps of a hidden layer
    (and updates its caches after a move there)."""

    def _padded(self, k: int, r: slice) -> torch.Tensor:
        """Stage k's input, zero-padded as its convolution pads it (cached per stage)."""
        if k not in self._pad_cache:
            layer = self.stages[k].layer
            if layer.dilation != (1, 1) or layer.groups != 1 or layer.padding_mode != "zeros":
                raise NotImplementedError("the neighbour evaluator supports plain convolutions only")
            ph, pw = layer.padding
            self._pad_cache = {k: F.pad(self.a[k], (pw, pw, ph, ph))}  # one layer at a time: memory
        return self._pad_cache[k][r]

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
        # the fused step (None: op by op), and whether its table is laid out for pooling (.fused)
        fuse = self.fuse if self.fuse is not None else self.device.type == "cpu" and B >= fusing_batch(len(self.y))
        spec = tail_spec(self.stages, k + 1, z_next.shape[1:]) if fuse else None
        pooled = spec is not None and spec[0][0] == "pool_major"
        weights, biases = self.weights[k + 2:], self.biases[k + 2:]
        base_sorted = base[order]
        if spec is not None:  # the fused step adds table[base] + zr, computed once per distinct base
            distinct_bases, base_at = torch.unique_consecutive(base_sorted, return_inverse=True)
        for r in self._image_chunks((U + S + 1) * (width + 4 * channel), rows):
            zr = z_next[r]
            n = len(zr)
            dz = torch.cat([self._dz(k, e_ch, e_in, e_delta, r),
                            self._dz(k, out_ch[joint, 0], in_idx[joint, 0], delta[joint, 0], r)
                            + self._dz(k, out_ch[joint, 1], in_idx[joint, 1], delta[joint, 1], r)])
            table = self._next_contribution(k, torch.cat([e_ch, out_ch[joint, 0]]), dz, r, pooled)  # [U + S + 1, ...]
            zr = pool_major(zr) if pooled else zr
            sub = max(1, self.chunk_elems // (n * widest))
            out_sorted = torch.empty(B, n, self.logits.shape[1], dtype=self.dtype, device=self.device)

            def score(b: slice, zb: torch.Tensor) -> None:
                """Neighbours b (in sorted order), whose next pre-activation is table[other] + zb."""
                z = torch.index_select(table, 0, other_sorted[b], out=self._buffer("z", (b.stop - b.start, *table.shape[1:])))
                z += zb
                # copied out at once: the logits may be z itself (buffer memory, reused next step)
                out_sorted[b] = self._forward_from(k + 1, z.reshape(-1, *z_next.shape[1:])).view(z.shape[0], n, -1)

            # a neighbour's next pre-activation is table[other] + (table[base] + zr) on every path
            if spec is not None:  # one call per sub-batch: per-call costs are high, the rows cached
                zb = torch.index_select(table, 0, distinct_bases) + zr
                for b0 in range(0, B, sub):
                    b = slice(b0, min(B, b0 + sub))
                    out_sorted[b] = fused_gathered_tail(spec, table, other_sorted[b], zb, base_at[b], weights, biases)
            elif grouped:
                start = 0
                for p, stop in groups:
                    zb = table[p] + zr
                    for b0 in range(start, stop, sub):
                        score(slice(b0, min(stop, b0 + sub)), zb)
                    start = stop
            else:
                for b0 in range(0, B, sub):
                    b = slice(b0, min(B, b0 + sub))
                    zb = torch.index_select(table, 0, base_sorted[b], out=self._buffer("z_base", (b.stop - b0, *table.shape[1:])))
                    zb += zr
                    score(b, zb)
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

    def _next_contribution(self, k, ch, dz, r, pooled: bool = False) -> torch.Tensor:
        """Change of stage k+1's pre-activation caused by dz[m] in stage k's channel ch[m] alone:
        [M + 1, n, *next pre-activation shape], the last row zeros (for swaps with one term);
        ``pooled``: each row in the layout of :func:`~aann.neighbours.fused.pool_major`."""
        M, n = dz.shape[:2]
        a_old = self.a[k + 1][r].reshape(n, self.z[k].shape[1], -1).transpose(0, 1)[ch]  # [M, n, per]
        da = self._channel_output(k, ch, dz, r) - a_old
        per = da.shape[2]
        nxt, w_next = self.stages[k + 1].layer, self.weights[k + 1]
        if isinstance(nxt, nn.Conv2d):
            h, w = self.a[k + 1].shape[2:]
            c_out, h_out, w_out = self.z[k + 1].shape[1:]
            out = self._buffer("table", (M + 1, n, 4, c_out * h_out * w_out // 4) if pooled else (M + 1, n, c_out, h_out, w_out))
            out[M] = 0
            rows = pool_major_view(out, c_out, h_out, w_out) if pooled else out  # written in out's layout
            # one convolution per run of endpoints in one input channel (the caller sorts them by
            # channel, so runs are long and the results land in contiguous slices)
            channels, counts = torch.unique_consecutive(ch, return_counts=True)
            start = 0
            for c, count in zip(channels.tolist(), counts.tolist()):
                m = slice(start, start + count)
                y = F.conv2d(da[m].reshape(-1, 1, h, w), w_next[:, c:c + 1], None, nxt.stride, nxt.padding)
                rows[m] = y.view(count, n, *rows.shape[2:])
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
