"""The book's numbers do not depend on which CPU kernels compute them.

PyTorch picks its CPU kernels at run time by processor (``ATEN_CPU_CAPABILITY``: default, avx2,
avx512) and oneDNN its convolutions by instruction set (``ONEDNN_MAX_CPU_ISA``). An AVX-512 Xeon,
an AVX-512 EPYC and an AVX2 laptop therefore round differently. This test runs the numerically
sensitive computations of the book in subprocesses limited to other kernel families and compares:
logits within float32 rounding, predictions and accuracies the same (one image of slack per
accuracy, for an image whose two top logits are within rounding). ``make test-kernels`` runs the
whole unit-test suite under each family.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aann.data import Split
from aann.models import get_model
from aann.neighbours import NeighbourEvaluator, sample_neighbours
from aann.perturbations import TREATMENTS, faults_grid, sweep
from aann.pruning import prune_to
from aann.ternary import sparse_layers, ternarize
from aann.training import logits

# ATEN_CPU_CAPABILITY and the oneDNN instruction-set cap that goes with it
FAMILIES = {"default": "SSE41", "avx2": "AVX2"}


def numbers() -> dict[str, torch.Tensor]:
    """A dense net's float32 logits (batches of 128, oneDNN convolutions), a ternary net's
    neighbour accuracies (the float64 evaluator) and its perturbation sweep."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = Split(torch.rand(300, 1, 28, 28, generator=g).round(), torch.randint(0, 10, (300,), generator=g))
    out = {"logits": logits(get_model("mnist_net"), images)}
    torch.manual_seed(1)
    net = get_model("mnist_net")
    with torch.no_grad():
        for layer in sparse_layers(net).values():
            layer.weight.normal_(0, 1)
    prune_to(net, 70, scope="layer")
    ternarize(net)
    with torch.no_grad():
        for layer in sparse_layers(net).values():
            layer.scale.fill_(0.05)
    few = Split(images.x[:64], images.y[:64])
    ev = NeighbourEvaluator(net, few)
    out["neighbours"] = torch.cat([ev.evaluate(sample_neighbours(net, layer, 30, seed=0))
                                   for layer in sparse_layers(net)])
    faults = faults_grid(["layer1.0", "layer2.0", "fc"], TREATMENTS, {t: [0.3, 0.7] for t in TREATMENTS}, 1)
    out["sweep"] = torch.as_tensor(sweep(net.eval(), images, faults, progress=False))
    return out


@pytest.fixture(scope="module")
def here():
    return numbers()


@pytest.mark.parametrize("family", FAMILIES)
def test_other_cpu_kernels_give_the_same_predictions(family, here, tmp_path):
    saved = tmp_path / f"{family}.pt"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": family, "ONEDNN_MAX_CPU_ISA": FAMILIES[family]}
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from test_cpu_kernels import numbers; "
            "torch.save(numbers(), sys.argv[2]); print(torch.backends.cpu.get_cpu_capability())")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(saved)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1].lower() == ("default" if family == "default" else family).lower()
    there = torch.load(saved, weights_only=True)
    torch.testing.assert_close(there["logits"], here["logits"], rtol=0, atol=1e-5)
    top2 = here["logits"].topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # far from a tie: rounding cannot move the prediction
    assert clear.float().mean() > 0.95
    assert torch.equal(there["logits"].argmax(1)[clear], here["logits"].argmax(1)[clear])
    torch.testing.assert_close(there["neighbours"], here["neighbours"], rtol=0, atol=1 / 64 + 1e-12)
    torch.testing.assert_close(there["sweep"], here["sweep"], rtol=0, atol=1 / 300 + 1e-12)
