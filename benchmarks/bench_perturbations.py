"""A Cheney-style sweep (every layer x three treatments x amounts x repeats) of the robustness
chapter's AlexNet-shaped CIFAR-10 net, timed in one run on the same images: aann.perturbations.sweep
(shared prefix, perturbed copies stacked along the batch) against the naive loop (deep copy per
fault, perturb, full evaluation), both with the same image batch size.

    python benchmarks/bench_perturbations.py [--images 1000] [--device cuda]

Writes _build/results/bench_perturbations.json:
- bench/sweep_speedup: the naive loop's time over the sweep's, both with images in the channels-last
  layout (the package's default): what stacking copies and sharing the prefix buy. sweep_s is one
  call over every fault (as the chapter calls it), naive_s the loop's time summed over layers.
- bench/sweep_speedup_vs_contiguous_loop: the same sweep against the loop with images in PyTorch's
  default contiguous (NCHW) layout, the loop as one would first write it; the ratio of the two
  speed-ups is what the layout alone buys.
- <layer>/batched_s (a call with that layer's faults only: it records the clean prefix once more),
  <layer>/naive_s, <layer>/naive_contiguous_s, <layer>/speedup, n_faults, n_eval_images;
- the ceiling of any method that must run the network from the perturbed layer on for each fault
  (the sweep is one): <layer>/ceiling = time of a full forward / time of the forward from that layer
  on (same batches, same layout), bench/sweep_ceiling the same over the whole sweep (equal faults
  per layer). A layer's cost sets how much sharing the layers before it can save.
Random weights and images: the cost of either path depends on the shapes, not on the values.
Accuracies are compared too (same draws: they must agree up to float rounding).
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
from timing import sync, timed  # benchmarks/timing.py: the script's folder is on sys.path

AMOUNTS = {"synapse_knockout": [0.3, 0.7], "node_knockout": [0.3, 0.7], "gaussian": [1.0, 2.0]}
REPEATS = 2
BATCH_SIZE = 128  # the default of sweep and naive_sweep


def suffix_times(model: torch.nn.Sequential, x: torch.Tensor, device, batch_size: int,
                 memory_format: torch.memory_format, repeats: int = 3) -> dict[str, float]:
    """Seconds to run ``x`` (in batches of ``batch_size``, laid out as the sweep lays them out) from
    each weight layer to the logits (the best of ``repeats``), and through the whole network under
    the key ``""``. Needs a Sequential whose weight layers are direct children (the AlexNet-shaped
    net)."""
    names = [name for name, _ in model.named_children()]
    children = list(model.children())
    part = lambda a, b=None: torch.nn.Sequential(*children[a:b])  # noqa: E731 (slicing a subclass calls its __init__)
    starts = {"": 0, **{layer: names.index(layer) for layer in weight_layers(model) if layer in names}}
    batches = [x[i:i + batch_size].contiguous(memory_format=memory_format) for i in range(0, len(x), batch_size)]
    out = {}
    with torch.inference_mode():
        for layer, i in starts.items():
            inputs, suffix = [part(0, i)(b) if i else b for b in batches], part(i)
            best = float("inf")
            for _ in range(repeats):
                sync(device)
                t = time.perf_counter()
                for h in inputs:
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
    layers = list(weight_layers(model))
    metrics = {"n_eval_images": args.images}
    # random weights leave logits near ties, so rounding flips a few argmaxes: on the CPU at most one
    # image in this setting; on a GPU cuDNN runs convolutions in TF32 by default (PyTorch's
    # allow_tf32) and picks its algorithm by batch size, so up to 0.5 % of the images may flip
    tolerance = (1.5 if device.type == "cpu" else 0.005 * args.images + 0.5) / args.images
    # the whole sweep as the chapter runs it: one call, the clean prefix recorded once per batch
    all_faults = faults_grid(layers, TREATMENTS, AMOUNTS, REPEATS)
    fast, t_fast = timed(lambda: sweep(model, data, all_faults, progress=False), device)
    n_faults = len(all_faults)
    total = {"naive": 0.0, "naive_contiguous": 0.0}
    for layer in layers:
        rows = [i for i, f in enumerate(all_faults) if f.layer == layer]
        faults = [all_faults[i] for i in rows]
        # per layer: a call of its own (it records the clean prefix once more)
        _, t_layer = timed(lambda: sweep(model, data, faults, progress=False), device)
        slow, t_naive = timed(lambda: naive_sweep(model, data, faults), device)
        plain, t_plain = timed(lambda: naive_sweep(model, data, faults, memory_format=torch.contiguous_format), device)
        for name, acc in (("naive loop", slow), ("naive loop, contiguous layout", plain)):
            if not np.allclose(fast[rows], acc, atol=tolerance):
                raise AssertionError(f"layer {layer}: the sweep and the {name} differ: {fast[rows]} vs {acc}")
        total["naive"] += t_naive
        total["naive_contiguous"] += t_plain
        metrics.update({f"{layer}/naive_s": t_naive, f"{layer}/naive_contiguous_s": t_plain,
                        f"{layer}/batched_s": t_layer, f"{layer}/speedup": t_naive / t_layer})
        print(f"{layer}: naive {t_naive:.2f} s (contiguous layout {t_plain:.2f} s), batched {t_layer:.2f} s, "
              f"speedup {t_naive / t_layer:.1f}x", flush=True)
    metrics.update({"n_faults": n_faults, "sweep_s": t_fast, "naive_s": total["naive"],
                    "naive_contiguous_s": total["naive_contiguous"],
                    "bench/sweep_speedup": total["naive"] / t_fast,
                    "bench/sweep_speedup_vs_contiguous_loop": total["naive_contiguous"] / t_fast})
    if isinstance(model, torch.nn.Sequential):
        times = suffix_times(model, data.x, device, BATCH_SIZE, torch.channels_last)
        layers = [layer for layer in weight_layers(model) if layer in times]
        for layer in layers:
            metrics[f"{layer}/ceiling"] = times[""] / times[layer]
        if len(layers) == len(weight_layers(model)):
            metrics["bench/sweep_ceiling"] = len(layers) * times[""] / sum(times[layer] for layer in layers)
            print(f"ceiling of suffix sharing over the whole sweep: {metrics['bench/sweep_ceiling']:.2f}x "
                  "(per layer: " + ", ".join(f"{layer} {metrics[f'{layer}/ceiling']:.1f}x" for layer in layers) + ")")
    print(f"whole sweep ({n_faults} faults): naive {total['naive']:.1f} s (contiguous layout "
          f"{total['naive_contiguous']:.1f} s), sweep {t_fast:.1f} s: speedup {metrics['bench/sweep_speedup']:.2f}x "
          f"({metrics['bench/sweep_speedup_vs_contiguous_loop']:.2f}x over the contiguous-layout loop)")
    path = write_results("bench_perturbations", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
