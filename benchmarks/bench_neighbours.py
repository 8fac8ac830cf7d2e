"""Neighbours evaluated per second on the full 10,000-image MNIST test set, per layer: the exact
fast evaluator (aann.neighbours.NeighbourEvaluator) against the naive loop (copy the network, swap,
full forward pass, per neighbour), measured in the same run.

    python benchmarks/bench_neighbours.py [--seconds 5] [--device cuda] [--layers fc]

Also the cost of a *move* (``NeighbourEvaluator.apply_swap``, what SENSE does after accepting a
neighbour: the caches updated from the swapped channels on) against building a fresh evaluator of
the moved network (what the cache update replaces).

Writes _build/results/bench_neighbours.json (keys <layer>/fast_per_s, <layer>/naive_per_s,
<layer>/speedup, <layer>/move_s, <layer>/rebuild_s, <layer>/certified_fraction for 1.0, 2.0, fc,
2.0_trained, fc_trained, and n_eval_images). The network is a 90 %-sparse ternary MNIST net with
random weights, every layer 90 % sparse: in layer 1.0 the cost of either path depends only on the
shapes and the sparsity. In the last two layers it also depends on the weights: the images whose
prediction no swap there can change are counted once (``certified_fraction``), few for a random
net, most for a trained one. So those two are measured again on the trained 90 % network of the
book (``<layer>_trained``: the quick profile's p-SIREN network, from the model cache, trained
first if the cache lacks it), whose neighbours the architecture-manifold chapter evaluates.
"""

from __future__ import annotations

import argparse

import torch

from aann.data import load_splits
from aann.models import get_model
from aann.neighbours import NeighbourEvaluator, naive_accuracy, neighbourhood_size, sample_neighbours
from aann.neighbours.fused import fusing_batch
from aann.pruning import prune_to
from aann.psiren import reference_network
from aann.results import write_results
from aann.runtime import default_device
from aann.ternary import ternarize
from timing import timed_until  # benchmarks/timing.py: the script's folder is on sys.path

# neighbours per batched step, per layer: layer 1.0 has few weights (400), so its whole neighbourhood
# (40 x 360 = 14,400 swaps) is one batch, and each swapped weight's contribution is computed once for
# all the neighbours that share it, as a scan of the whole neighbourhood does (400 images, 2-core
# CPU: 4,096 -> 9.7/s, 8,192 -> 14.1/s, 14,000 -> 17.6/s)
BATCH = {"1.0": 14_400, "2.0": 1024, "fc": 4096}


def bench_net(device) -> torch.nn.Module:
    torch.manual_seed(0)
    net = get_model("mnist_net")
    prune_to(net, 90, scope="layer")
    ternarize(net)
    return net.to(device)


def measure(net, test, layer: str, seconds: float, device) -> dict:
    """One layer: neighbours per second fast and naive, a move and a fresh evaluator, in seconds."""
    evaluator = NeighbourEvaluator(net, test)
    pool = sample_neighbours(net, layer, min(20_000, neighbourhood_size(net, layer)), seed=0)
    cursor = {"i": 0}

    def fast():
        i, b = cursor["i"], BATCH[layer]
        cursor["i"] = (i + b) % max(1, len(pool) - b)
        evaluator.evaluate(pool[i:i + b], batch_size=b)
        return b

    # warm-up: batches large enough to be fused, of two shapes, so that the fused step's compilation
    # for shapes as they come is done before the clock runs
    n = min(len(pool) - 32, fusing_batch(len(test)))
    for b in (n, n + 32):
        evaluator.evaluate(pool[:b], batch_size=b)
    n_fast, t_fast = timed_until(fast, seconds, device)
    naive_cursor = {"i": 0}

    def naive():
        i = naive_cursor["i"]
        naive_cursor["i"] += 1
        naive_accuracy(net, test, pool[i:i + 1])
        return 1

    naive()
    n_naive, t_naive = timed_until(naive, seconds, device)
    # a move and its reverse (the swapped pair trades back), so the network stays the same
    src, dst = int(pool.src[0]), int(pool.dst[0])

    def move():
        evaluator.apply_swap(layer, src, dst)
        evaluator.apply_swap(layer, dst, src)
        return 2

    n_move, t_move = timed_until(move, seconds, device)

    def rebuild():
        NeighbourEvaluator(net, test)
        return 1

    n_build, t_build = timed_until(rebuild, seconds, device)
    out = {"move_s": t_move / n_move, "rebuild_s": t_build / n_build, "fast_per_s": n_fast / t_fast,
           "naive_per_s": n_naive / t_naive}
    out["speedup"] = out["fast_per_s"] / out["naive_per_s"]
    out["certified_fraction"] = evaluator.certified_fraction(layer)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum time per measurement")
    parser.add_argument("--device", default=None)
    parser.add_argument("--layers", nargs="+", default=["1.0", "2.0", "fc"], choices=["1.0", "2.0", "fc"],
                        help="layers of the random network to measure (2.0 and fc are also measured on the trained one)")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    test = load_splits("mnist", device=device, download=True)["test"]
    random_net = bench_net(device)  # each measurement builds its own evaluator; moves are undone
    nets = {layer: random_net for layer in args.layers}
    # in the last two layers the cost depends on the network: images whose prediction no swap there
    # can change are counted once (NeighbourEvaluator.certified_fraction), most of them for a trained net
    trained = reference_network("mnist", 90, "quick", device=device).model
    nets.update({f"{layer}_trained": trained for layer in ("2.0", "fc")})
    metrics = {"n_eval_images": len(test)}
    for key, net in nets.items():
        layer = key.split("_")[0]
        for what, value in measure(net, test, layer, args.seconds, device).items():
            metrics[f"{key}/{what}"] = value
        m = {what: metrics[f"{key}/{what}"] for what in ("fast_per_s", "naive_per_s", "speedup", "move_s", "rebuild_s",
                                                          "certified_fraction")}
        print(f"{key}: fast {m['fast_per_s']:.1f}/s, naive {m['naive_per_s']:.2f}/s, speedup {m['speedup']:.0f}x; "
              f"a move {m['move_s']:.3f} s, a fresh evaluator {m['rebuild_s']:.3f} s; "
              f"images certified {m['certified_fraction']:.1%}", flush=True)
    path = write_results("bench_neighbours", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
