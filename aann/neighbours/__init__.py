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

**One loop per batch of neighbours.** Scoring a hidden layer's neighbours is bound by memory
traffic: each neighbour's next pre-activation is two rows of a table of per-weight contributions
plus the cached one, then pooled, clamped and mapped to logits. On the CPU that step is compiled
(``torch.compile``) into one loop that reads each row once, with the table laid out so that 2x2
pooling takes the maximum of four contiguous slabs (``fused.py``); the arithmetic is the unfused
step's, so the results are too. ``make bench`` measures the evaluator against the naive loop.

**Images that no swap can flip.** In the output layer a swap moves at most two logits, by at most
$\alpha \max_u |h_u|$ each: an image whose top logit leads by more than twice that keeps its
prediction under every swap of the layer, so accuracies count it once rather than per neighbour
(``NeighbourEvaluator.certified_fraction()``: 98.7 % of MNIST's test images for a trained
90 %-sparse net, about 27 % for a random one). A looser bound does the same for the layer before
the output layer (87.6 % for that trained net).
"""

from .analysis import (Scan, distinct_distances, naive_accuracy, neighbour_output_vectors, neighbour_summary,
                       neighbour_weight_vectors, scan)
from .evaluator import NeighbourEvaluator
from .swaps import Swaps, apply_swap, iter_neighbours, neighbourhood_size, sample_neighbours, undo_swap

__all__ = ["Swaps", "neighbourhood_size", "sample_neighbours", "iter_neighbours", "apply_swap", "undo_swap",
           "NeighbourEvaluator", "Scan", "scan", "naive_accuracy", "neighbour_weight_vectors",
           "neighbour_output_vectors", "distinct_distances", "neighbour_summary"]
