"""2x2 max-pooling, the same numbers as ``torch.nn.functional.max_pool2d(x, 2)``, faster on the CPU.

PyTorch's CPU kernel for the usual (NCHW) layout finds each window's maximum and its index one
output at a time: on the small feature maps of this book's networks it took half of a training step
of the MNIST net (7.4 of about 30 ms at batch 128 on one thread, its backward pass 1.4 ms more). Two
exact shortcuts:

* **No gradient needed** (evaluation): the maximum of each window as the maximum of two row
  pairs, then of two column pairs, ``torch.maximum`` on strided views (about 20x faster). The values
  are those of ``max_pool2d``; only the sign of an exact zero can differ where a window holds both
  -0.0 and +0.0, which changes no sum, product, comparison or prediction downstream.
* **Gradient needed** (training): the forward pass with indices runs in the channels-last layout,
  whose kernel is vectorised over channels, and the backward pass is the library's own, from those
  indices. Bit for bit ``max_pool2d``, ties included (the first maximum of a window in row-major
  order takes the gradient), checked in ``tests/test_pooling.py``; about 3x faster for the whole
  forward and backward pass.

Other devices, and pooling other than a plain 2x2 window with stride 2, use ``max_pool2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["max_pool_2x2_values", "max_pool_2x2", "MaxPool2d", "is_plain_2x2"]

# kernel, stride, padding, dilation, ceil_mode of a plain 2x2 pooling
_WINDOW = ([2, 2], [2, 2], [0, 0], [1, 1], False)


def max_pool_2x2_values(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)`` without a gradient: the maximum of row pairs, then of column pairs (any device).
    Floor mode: an odd last row or column is dropped, as ``max_pool2d`` drops it."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class _ChannelsLastMaxPool(torch.autograd.Function):
    """2x2 max-pooling of an NCHW tensor whose indices come from the channels-last kernel."""

    @staticmethod
    def forward(ctx, x):
        values, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), *_WINDOW)
        # indices are positions within each channel's h x w plane in either layout
        ctx.save_for_backward(x, indices)
        return values.contiguous() if x.is_contiguous() else values  # the input's layout

    @staticmethod
    def backward(ctx, grad):
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *_WINDOW, indices.contiguous())


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)`` of a 4-D tensor (N, C, H, W), with the CPU shortcuts of this module."""
    if x.device.type != "cpu" or x.dim() != 4 or x.shape[-2] < 2 or x.shape[-1] < 2:
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ChannelsLastMaxPool.apply(x)
    return max_pool_2x2_values(x)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that takes :func:`max_pool_2x2` for a plain 2x2 window with stride 2."""

    def forward(self, x):
        if is_plain_2x2(self):
            return max_pool_2x2(x)
        return super().forward(x)


def is_plain_2x2(m: nn.Module) -> bool:
    """Whether ``m`` is a max-pooling over 2x2 windows with stride 2, no padding or dilation,
    floor mode and no indices returned: the pooling that :func:`max_pool_2x2` computes."""
    return (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == (2, 2) and _pair(m.stride) == (2, 2)
            and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1)
            and not m.ceil_mode and not m.return_indices)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
