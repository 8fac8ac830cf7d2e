"""The step that scores a batch of hidden-layer neighbours, as one compiled loop on the CPU.

After a swap in hidden stage $k$, a neighbour's pre-activation of stage $k+1$ is the cached one plus
two rows of the contribution table (see :mod:`.hidden_layers`); the rest of the network maps it to
logits. Run op by op, each step (gather, add, pool, clamp) reads and writes the whole batch of
pre-activations: for layer 1.0 of the MNIST net 6,272 float64 per neighbour and image, several
times, so the step is bound by memory traffic, not arithmetic. ``torch.compile`` fuses the
gathers, the sums, the pooling and the clamp into one loop that reads each table row once and
writes only the pooled units; the matrix products stay the library's own. The arithmetic is the
same expression in the same order, so the results equal the unfused step's
(``tests/test_neighbours.py`` compares them; ``benchmarks/bench_neighbours.py`` measures both).

Where no C++ compiler is found (or compilation fails for another reason) a warning says so once
and the same function runs uncompiled: the same numbers, more slowly.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .stages import _post_steps, _run_steps

__all__ = []

# NeighbourEvaluator(fuse=None) fuses a batch on the CPU from this many neighbours times images of
# the evaluation set on: the compilation costs about 20 s once per process on a 2-core CPU, the
# fused step saves a few microseconds per neighbour and image, and only where many neighbours share
# a table. A SENSE step (30 sampled swaps of layer 1.0 on 2,000 images, about 60 table rows) is
# bound by building the table, not by scoring: 2.9 s fused against 3.0 s op by op.
FUSE_MIN_WORK = 10_000_000


def fusing_batch(n_images: int) -> int:
    """The fewest neighbours a batch on ``n_images`` images needs for ``NeighbourEvaluator(fuse=None)``
    to fuse it on the CPU (callers that choose batch sizes read the rule here)."""
    return -(-FUSE_MIN_WORK // n_images)


def tail_spec(stages, j: int, shape) -> tuple | None:
    """Stages ``j``, ``j+1``, ... as steps :func:`gathered_tail` can run, or None where a stage
    holds anything else: stage ``j``'s post (led by ``("pool_major", C, H, W)`` where it starts
    with 2x2 pooling of an even-sized map of ``shape`` (C, H, W)), then each later stage's layer,
    ``("conv", stride, padding)`` or ``("linear",)``, and post."""
    spec = []
    for i in range(j, len(stages)):
        layer = stages[i].layer
        if i > j and isinstance(layer, nn.Conv2d):
            if layer.dilation != (1, 1) or layer.groups != 1 or layer.padding_mode != "zeros":
                return None
            spec.append(("conv", tuple(layer.stride), tuple(layer.padding)))
        elif i > j:
            spec.append(("linear",))
        post = _post_steps(stages[i].post)
        if any(isinstance(step, nn.Module) for step in post):
            return None
        if i == j and post[:1] == (("pool",),) and len(shape) == 3 and shape[1] % 2 == 0 and shape[2] % 2 == 0:
            spec.append(("pool_major", *shape))
            post = post[1:]
        spec.append(("post", post))
    return tuple(spec)


def pool_major_view(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """``t`` [..., 4, c * h * w / 4], pool-major (see :func:`pool_major`), seen as [..., c, h / 2,
    2, w / 2, 2]: element (ch, y, dy, x, dx) is that of (ch, 2y + dy, 2x + dx) of the map."""
    lead = t.shape[:-2]
    return t.view(*lead, 2, 2, c, h // 2, w // 2).movedim((-5, -4), (-3, -1))


def pool_major(z: torch.Tensor) -> torch.Tensor:
    """Maps [..., C, H, W] (H, W even) as [..., 4, C * H/2 * W/2]: slab 2 dy + dx holds element
    (dy, dx) of every 2x2 window, in the order of the pooled map, so 2x2 max-pooling is the
    maximum of four contiguous slabs (which vectorises; the strided windows of the map do not)."""
    *lead, c, h, w = z.shape
    return z.reshape(*lead, c, h // 2, 2, w // 2, 2).movedim((-3, -1), (-5, -4)).reshape(*lead, 4, -1)


def gathered_tail(spec: tuple, table: torch.Tensor, other: torch.Tensor, zb: torch.Tensor, base: torch.Tensor,
                  weights: list, biases: list) -> torch.Tensor:
    """Logits [B, n, classes] of B neighbours whose pre-activation of the tail's first stage is
    ``table[other] + zb[base]`` on n images (table, zb [rows, n, ...]; pool-major where the spec
    starts with ``pool_major``); ``weights``, ``biases``: the tail's later stages'."""
    z = torch.index_select(table, 0, other) + torch.index_select(zb, 0, base)
    B, n = z.shape[:2]
    a, w = z.reshape(B * n, *z.shape[2:]), 0
    for op in spec:
        if op[0] == "pool_major":  # the maximum of each window's four slabs, then the map's shape
            a = torch.maximum(torch.maximum(a[:, 0], a[:, 1]), torch.maximum(a[:, 2], a[:, 3]))
            a = a.view(B * n, op[1], op[2] // 2, op[3] // 2)
        elif op[0] == "post":
            a = _run_steps(op[1], a)
        elif op[0] == "conv":
            a, w = F.conv2d(a, weights[w], biases[w], op[1], op[2]), w + 1
        else:
            a, w = F.linear(a, weights[w], biases[w]), w + 1
    return a.view(B, n, -1)


_compiled = None
_failed = False


def fused_gathered_tail(*args) -> torch.Tensor:
    """:func:`gathered_tail`, compiled (once per process; the shapes are specialised as they come),
    or as it is where compiling fails."""
    global _compiled, _failed
    if not _failed:
        try:
            if _compiled is None:
                # compiling imports the C++ extension helpers, which log that no CUDA runtime is
                # found on every machine without one: not news to a CPU run
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                _compiled = torch.compile(gathered_tail)
            return _compiled(*args)
        except Exception as err:  # no compiler, an unsupported platform: the same function, uncompiled
            _failed = True
            first = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            warnings.warn(f"the fused neighbour step could not be compiled ({first}); evaluating it "
                          "uncompiled: the same results, more slowly", RuntimeWarning, stacklevel=2)
    return gathered_tail(*args)
