"""Images that no swap can flip: counted once instead of once per neighbour (exact)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .stages import _shrinks

__all__ = ["Certification"]


class Certification:
    """The part of :class:`~aann.neighbours.NeighbourEvaluator` that bounds how far a swap in the
    last two layers can move the logits, and so finds the images whose prediction it cannot change."""

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
