"""aann.training: evaluation in batches gives what one pass over all images gives."""

import torch

from aann.data import Split
from aann.models import get_model
from aann.training import accuracy, eval_batch_size, logits


def test_evaluation_batches_do_not_change_the_outputs():
    torch.manual_seed(0)
    model = get_model("mnist_net")
    data = Split(torch.rand(600, 1, 28, 28).round(), torch.randint(0, 10, (600,)))
    assert eval_batch_size("cpu") < len(data)  # the default cuts these images into several batches
    whole = logits(model, data, batch_size=len(data))
    assert torch.equal(logits(model, data), whole)
    expected = (whole.argmax(1) == data.y).float().mean().item()
    for batch_size in (None, 7, 600):
        assert abs(accuracy(model, data, batch_size) - expected) < 1e-9
