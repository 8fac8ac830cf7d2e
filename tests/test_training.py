"""aann.training: evaluation in batches gives what one pass over all images gives."""

import torch

from aann.data import Split
from aann.models import get_model
from aann.training import accuracy, eval_batch_size, logits


def test_evaluation_batches_do_not_change_the_predictions():
    """Batches of 128 and one batch of 600 may run different CPU kernels (oneDNN picks its
    convolution by shape and processor: on an AVX-512 Xeon the logits differ by up to 4e-7), so
    the logits agree within float32 rounding (1e-5 absolute on logits of order 1) and the
    predictions and accuracy exactly; the images are chosen far from ties (a top-two margin of at
    least 1e-4, 250 times that difference; checked), where rounding cannot change a prediction."""
    torch.manual_seed(0)
    model = get_model("mnist_net")
    data = Split(torch.rand(600, 1, 28, 28).round(), torch.randint(0, 10, (600,)))
    assert eval_batch_size("cpu") < len(data)  # the default cuts these images into several batches
    whole = logits(model, data, batch_size=len(data))
    top2 = whole.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-4
    batched = logits(model, data)
    torch.testing.assert_close(batched, whole, rtol=0, atol=1e-5)
    assert torch.equal(batched.argmax(1), whole.argmax(1))
    expected = (whole.argmax(1) == data.y).float().mean().item()
    for batch_size in (None, 7, 600):
        assert abs(accuracy(model, data, batch_size) - expected) < 1e-9
