"""aann.metrics: one rule for tied outputs (the lower class index ranks first), everywhere."""

import copy

import pytest
import torch

from aann.data import Split
from aann.metrics import label_rank, top_k_hits
from aann.models import get_model
from aann.perturbations import Fault, naive_sweep, perturb, sweep, topk_accuracy
from aann.training import accuracy


def test_ties_rank_by_class_index():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                           [1.0, 2.0, 2.0, 0.0],
                           [1.0, 2.0, 2.0, 0.0],
                           [5.0, 5.0, 5.0, 5.0]])
    y = torch.tensor([2, 1, 2, 0])
    assert label_rank(logits, y).tolist() == [2, 0, 1, 0]
    assert top_k_hits(logits, y, (1, 2, 3, 10)).tolist() == [2, 3, 4, 4]


def test_top1_is_argmax_and_topk_is_a_stable_sort():
    """On logits full of ties (small integers), top-1 is ``argmax`` and top-k ranks as a stable sort
    by descending logit: the brute-force definition."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(-2, 3, (3, 500, 10), generator=g).float()
    y = torch.randint(0, 10, (500,), generator=g)
    hits = top_k_hits(logits, y, (1, 3, 5))
    assert torch.equal(hits[..., 0], (logits.argmax(-1) == y).sum(-1))
    order = torch.sort(-logits, dim=-1, stable=True).indices
    for j, k in enumerate((1, 3, 5)):
        assert torch.equal(hits[..., j], (order[..., :k] == y[:, None]).any(-1).sum(-1))


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="logits for 3 images, labels for 2"):
        label_rank(torch.zeros(3, 10), torch.zeros(2, dtype=torch.long))


@pytest.fixture(scope="module")
def alexnet_and_images():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = Split(torch.rand(200, 3, 32, 32, generator=g), torch.randint(0, 10, (200,), generator=g))
    return get_model("alexnet_cifar").eval(), images


def test_a_knocked_out_output_layer_ties_every_class_and_predicts_class_0(alexnet_and_images):
    """Every output unit knocked out: every logit is exactly 0. Class 0 ranks first, classes 0-4 make
    the top 5, in the sweep, the naive loop and plain argmax alike (``torch.topk`` would rank the tied
    classes in an arbitrary order)."""
    net, images = alexnet_and_images
    fault = Fault("dense3", "node_knockout", 1.0)
    expected = [int((images.y == 0).sum()) / len(images), int((images.y < 5).sum()) / len(images)]
    assert sweep(net, images, [fault], progress=False)[0].tolist() == expected
    assert naive_sweep(net, images, [fault])[0].tolist() == expected
    with perturb(net, fault):
        assert topk_accuracy(net, images).tolist() == expected
        assert accuracy(net, images) == expected[0]


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.7])
def test_output_node_knockout_counts_as_argmax_does(alexnet_and_images, amount):
    """Part of the output units knocked out: their logits are exactly 0 and tie with one another.
    The sweep's top-1 is the accuracy of the perturbed network's argmax: the same batches in the
    same memory layout, so the same arithmetic, and the counts are equal. The output biases are
    lowered so that the surviving logits are negative and the knocked-out zeros lead, tied."""
    net, images = alexnet_and_images
    net = copy.deepcopy(net)
    with torch.no_grad():
        net.dense3.bias -= 100.0
    faults = [Fault("dense3", "node_knockout", amount, r) for r in range(4)]
    top1 = sweep(net, images, faults, topk=(1,), batch_size=100, progress=False)[:, 0]
    ties = 0
    for fault, acc in zip(faults, top1):
        with perturb(net, fault), torch.inference_mode():
            x = images.x.contiguous(memory_format=torch.channels_last)
            logits = torch.cat([net(x[i:i + 100]) for i in range(0, len(images), 100)])
            ties += int((logits == logits.max(1, keepdim=True).values).sum(1).gt(1).sum())
            assert acc == int((logits.argmax(1) == images.y).sum()) / len(images)
    assert ties > 0  # the case really has ties at the top
