"""A Cheney-style sweep (every layer x three treatments x amounts x repeats) of the robustness
chapter's AlexNet-shaped CIFAR-10 net, timed two ways in the same run on the same images:
aann.perturbations.sweep (shared prefix, perturbed copies stacked along the batch) against the
naive loop (deep copy per fault, perturb, full evaluation), both with the same image batch size.

    python benchmarks/bench_perturbations.py [--images 1000] [--device cuda]

Writes _build/results/bench_perturbations.json: bench/sweep_speedup (whole sweep, naive time over
batched time), <layer>/speedup, <layer>/naive_s, <layer>/batched_s, n_faults, n_eval_images, and
the ceiling of any method that must run the network from the perturbed layer on for each fault
(the batched sweep is one): <layer>/ceiling = time of a full forward / time of the forward from that
layer on, bench/sweep_ceiling the same over the whole sweep (equal faults per layer). A layer's
cost sets how much sharing the layers before it can save.
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


def suffix_times(model: torch.nn.Sequential, x: torch.Tensor, device, repeats: int = 5) -> dict[str, float]:
    """Seconds per forward of ``x`` from each weight layer to the logits (the best of ``repeats``),
    and of the whole network under the key ``""``. Needs a Sequential whose weight layers are
    direct children (the AlexNet-shaped net)."""
    names = [name for name, _ in model.named_children()]
    children = list(model.children())
    part = lambda a, b=None: torch.nn.Sequential(*children[a:b])  # noqa: E731 (slicing a subclass calls its __init__)
    starts = {"": 0, **{layer: names.index(layer) for layer in weight_layers(model) if layer in names}}
    out = {}
    with torch.inference_mode():
        for layer, i in starts.items():
            h, suffix = (part(0, i)(x) if i else x), part(i)
            best = float("inf")
            for _ in range(repeats):
                sync(device)
                t = time.perf_counter()
                suffix(h)
                sync(device)
                best = min(best, time.perf_counter() - t)
            out[layer] = best
    return out


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
    if isinstance(model, torch.nn.Sequential):
        times = suffix_times(model, data.x, device)
        layers = [layer for layer in weight_layers(model) if layer in times]
        for layer in layers:
            metrics[f"{layer}/ceiling"] = times[""] / times[layer]
        if len(layers) == len(weight_layers(model)):
            metrics["bench/sweep_ceiling"] = len(layers) * times[""] / sum(times[layer] for layer in layers)
            print(f"ceiling of suffix sharing over the whole sweep: {metrics['bench/sweep_ceiling']:.2f}x "
                  "(per layer: " + ", ".join(f"{layer} {metrics[f'{layer}/ceiling']:.1f}x" for layer in layers) + ")")
    print(f"whole sweep ({n_faults} faults): naive {total_naive:.1f} s, batched {total_fast:.1f} s, "
          f"speedup {metrics['bench/sweep_speedup']:.2f}x")
    path = write_results("bench_perturbations", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
