"""A Cheney-style sweep (every layer x three treatments x amounts x repeats) of the robustness
chapter's AlexNet-shaped CIFAR-10 net, timed two ways in the same run on the same images:
aann.perturbations.sweep (shared prefix, perturbed copies stacked along the batch) against the
naive loop (deep copy per fault, perturb, full evaluation), both with the same image batch size.

    python benchmarks/bench_perturbations.py [--images 1000] [--device cuda]

Writes _build/results/bench_perturbations.json: bench/sweep_speedup (whole sweep, naive time over
batched time), <layer>/speedup, <layer>/naive_s, <layer>/batched_s, n_faults, n_eval_images.
Random weights and images: the cost of either path depends on the shapes, not on the values.
The two paths' accuracies are compared too (they must agree: same draws).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aann.data import Split
from aann.models import get_model
from aann.perturbations import TREATMENTS, faults_grid, naive_sweep, sweep, weight_layers
from aann.results import write_results
from aann.runtime import default_device

AMOUNTS = {"synapse_knockout": [0.3, 0.7], "node_knockout": [0.3, 0.7], "gaussian": [1.0, 2.0]}
REPEATS = 2


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--model", default="alexnet_cifar")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    torch.manual_seed(0)
    model = get_model(args.model).to(device).eval()
    g = torch.Generator().manual_seed(1)
    data = Split(torch.rand(args.images, 3, 32, 32, generator=g), torch.randint(0, 10, (args.images,), generator=g))
    data = data.to(device)
    sweep(model, data, faults_grid(["conv1"], ["gaussian"], {"gaussian": [1.0]}, 1), progress=False)  # warm-up
    metrics = {"n_eval_images": args.images}
    total_naive = total_fast = 0.0
    n_faults = 0
    for layer in weight_layers(model):
        faults = faults_grid([layer], TREATMENTS, AMOUNTS, REPEATS)
        n_faults += len(faults)
        sync(device)
        start = time.perf_counter()
        fast = sweep(model, data, faults, progress=False)
        sync(device)
        t_fast = time.perf_counter() - start
        start = time.perf_counter()
        slow = naive_sweep(model, data, faults)
        sync(device)
        t_naive = time.perf_counter() - start
        if not np.allclose(fast, slow, atol=1.5 / args.images):
            raise AssertionError(f"layer {layer}: batched and naive accuracies differ: {fast} vs {slow}")
        total_naive += t_naive
        total_fast += t_fast
        metrics.update({f"{layer}/naive_s": t_naive, f"{layer}/batched_s": t_fast, f"{layer}/speedup": t_naive / t_fast})
        print(f"{layer}: naive {t_naive:.2f} s, batched {t_fast:.2f} s, speedup {t_naive / t_fast:.1f}x", flush=True)
    metrics["n_faults"] = n_faults
    metrics["bench/sweep_speedup"] = total_naive / total_fast
    print(f"whole sweep ({n_faults} faults): naive {total_naive:.1f} s, batched {total_fast:.1f} s, "
          f"speedup {metrics['bench/sweep_speedup']:.2f}x")
    path = write_results("bench_perturbations", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
