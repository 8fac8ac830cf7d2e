"""The cost of one SENSE step: scoring a small sample of first neighbours (30, as the book's
searches and checks draw them) of one layer on the selection images (2,000), with the
cross-entropy fitness, per layer of the MNIST net and of the car net, at several image-chunk sizes
of the neighbour evaluator (``NeighbourEvaluator(chunk_elems=...)``), measured in the same run.

    python benchmarks/bench_sense_step.py [--seconds 3] [--device cuda] [--chunks 20 22 24]

The workload ``make bench``'s ``bench_neighbours.py`` does not cover: there, thousands of
neighbours share each swapped weight's work; here 30 sampled swaps have about 60 distinct endpoints,
and a batched step's many small calls weigh more. The chunk size trades those calls against the
CPU's caches, and this benchmark is where the evaluator's default was chosen.

Writes _build/results/bench_sense_step.json: ``<net>/<layer>/chunk<e>_s`` (seconds to score the 30
neighbours with chunks of 2**e elements; the mean over calls for at least ``--seconds``),
``n_images``, ``n_neighbours``. Random 80 %-sparse ternary nets and random images: the cost depends
on the shapes and the sparsity, not on the values.
"""

from __future__ import annotations

import argparse

import torch

from aann.data import Split
from aann.neighbours import NeighbourEvaluator, sample_neighbours
from aann.results import write_results
from aann.runtime import default_device
from aann.sense import random_sparse_ternary
from aann.ternary import sparse_layers
from timing import timed_until  # benchmarks/timing.py: the script's folder is on sys.path

NETS = {"mnist_net": (1, 28, 28, 10), "car_net": (1, 96, 96, 3)}  # input shape, classes
N_IMAGES, N_NEIGHBOURS = 2_000, 30


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--device", default=None)
    parser.add_argument("--chunks", type=int, nargs="+", default=[20, 22, 24], help="log2 of chunk_elems")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    metrics = {"n_images": N_IMAGES, "n_neighbours": N_NEIGHBOURS}
    gen = torch.Generator().manual_seed(0)
    for name, (*shape, classes) in NETS.items():
        net = random_sparse_ternary(name, 80, seed=0).to(device)
        data = Split(torch.rand(N_IMAGES, *shape, generator=gen).to(device),
                     torch.randint(classes, (N_IMAGES,), generator=gen).to(device))
        for e in args.chunks:
            evaluator = NeighbourEvaluator(net, data, chunk_elems=2**e)
            for layer in sparse_layers(net):
                swaps = sample_neighbours(net, layer, N_NEIGHBOURS, seed=1)

                def step():
                    evaluator.evaluate(swaps, batch_size=1024, loss_temperature=0.5)
                    return 1

                step()  # warm-up: buffers allocated, first-call costs paid
                calls, seconds = timed_until(step, args.seconds, device)
                metrics[f"{name}/{layer}/chunk{e}_s"] = seconds / calls
                print(f"{name} layer {layer}, chunks of 2**{e}: {seconds / calls:.3f} s per step", flush=True)
    path = write_results("bench_sense_step", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
