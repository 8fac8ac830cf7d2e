"""A swap of the output layer: only the two logits it touches change, and for accuracies only the
prediction is needed, not the logits."""

from __future__ import annotations

import torch

__all__ = ["OutputLayerSwaps"]


class OutputLayerSwaps:
    """The part of :class:`~aann.neighbours.NeighbourEvaluator` that scores swaps of the output layer."""

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
