r"""Top-k accuracy with one rule for ties, used wherever the book counts correct images.

A network's outputs can tie exactly: a knocked-out output unit gives the logit 0 for every image,
and a saturated ternary network gives logits that are small integers times a scale. The rank of the
label $y$ among the logits $z$ is

$$\operatorname{rank}(z, y) = \#\{c : z_c > z_y\} + \#\{c < y : z_c = z_y\},$$

the classes ranked above $y$ when ties go to the lower class index, the rule of ``torch.argmax``
(and of numpy's). An image counts as correct at top-$k$ when $\operatorname{rank} < k$; at $k = 1$
that is ``logits.argmax(-1) == y``, which the training loops and the exact neighbour evaluator use.
``torch.topk`` orders tied values arbitrarily, so its top-$k$ must not be used to count.
"""

from __future__ import annotations

import torch

__all__ = ["label_rank", "top_k_hits"]


def label_rank(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many classes rank above each label (``logits`` (..., n, C), ``y`` (n,)): larger logits,
    and equal logits of lower class index. 0 means the image is classified correctly."""
    if logits.shape[-2] != y.shape[-1]:
        raise ValueError(f"logits for {logits.shape[-2]} images, labels for {y.shape[-1]}")
    own = logits.gather(-1, y.expand(logits.shape[:-1]).unsqueeze(-1))  # (..., n, 1)
    classes = torch.arange(logits.shape[-1], device=logits.device)
    lower = classes < y.unsqueeze(-1)  # (n, C): classes before the label
    return ((logits > own) | ((logits == own) & lower)).sum(-1)


def top_k_hits(logits: torch.Tensor, y: torch.Tensor, topk=(1, 5)) -> torch.Tensor:
    """(..., len(topk)) counts of images whose label ranks among the first k (:func:`label_rank`);
    k larger than the number of classes counts every image."""
    rank = label_rank(logits, y)
    return torch.stack([(rank < k).sum(-1) for k in topk], -1)
