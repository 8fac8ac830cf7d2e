"""Evaluation throughput against the batch size, per network of the book: microseconds per image
of a forward pass (``aann.training.logits``) in batches of 128 ... 2,000, and how far each batch
size's outputs are from the largest's: the predictions should be the same, the logits may differ in
the last bits (the CPU's kernels are chosen by shape and processor). ``aann.training.eval_batch_size``
picks the default from this.

    python benchmarks/bench_eval_batch.py [--threads 1] [--images 4000] [--device cpu]

Writes _build/results/bench_eval_batch.json: ``<model>/us_per_image_b<batch>``,
``<model>/same_predictions_b<batch>`` (1 or 0), ``<model>/max_abs_diff_b<batch>`` (of the logits),
``threads``, ``n_images``.
"""

from __future__ import annotations

import argparse

import torch

from aann.data import Split
from aann.models import get_model
from aann.results import write_results
from aann.runtime import default_device
from aann.training import logits
from timing import timed  # benchmarks/timing.py: the script's folder is on sys.path

# input shape per network (None: flat MNIST images)
INPUTS = {"mnist_net": (1, 28), "car_net": (1, 96), "alexnet_cifar": (3, 32), "vgg_cifar": (3, 32),
          "allconv_elu": (3, 32), "elu_mlp": None}
BATCHES = (2000, 1000, 500, 256, 128)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    metrics = {"threads": torch.get_num_threads(), "n_images": args.images}
    gen = torch.Generator().manual_seed(0)
    for name, shape in INPUTS.items():
        torch.manual_seed(0)
        model = get_model(name).to(device)
        x = torch.rand((args.images, 784) if shape is None else (args.images, shape[0], shape[1], shape[1]), generator=gen)
        data = Split(x.to(device), torch.zeros(args.images, dtype=torch.long, device=device))
        reference = None
        for batch in BATCHES:
            logits(model, Split(data.x[:batch], data.y[:batch]), batch)  # warm-up
            out, seconds = timed(lambda: logits(model, data, batch), device)
            reference = out if reference is None else reference
            metrics[f"{name}/us_per_image_b{batch}"] = 1e6 * seconds / args.images
            metrics[f"{name}/same_predictions_b{batch}"] = float(torch.equal(out.argmax(1), reference.argmax(1)))
            metrics[f"{name}/max_abs_diff_b{batch}"] = float((out - reference).abs().max())
        print(name, " ".join(f"b{b}: {metrics[f'{name}/us_per_image_b{b}']:.0f} us" for b in BATCHES),
              "| same predictions:", all(metrics[f"{name}/same_predictions_b{b}"] for b in BATCHES),
              f"| logits apart by at most {max(metrics[f'{name}/max_abs_diff_b{b}'] for b in BATCHES):.1e}", flush=True)
    path = write_results("bench_eval_batch", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
