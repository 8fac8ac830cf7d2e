"""2x2 max-pooling: ``aann.pooling.MaxPool2d`` (the book's models) against the library's
``nn.MaxPool2d``, measured in the same run, in the book's networks: one training step (forward,
backward, Adam) at batch 128 and one evaluation forward pass at batch 2,000, per network. Both arms
start from the same weights and see the same batches; after the timed steps their weights must be
equal bit for bit (``<model>/identical``, 1 or 0).

    python benchmarks/bench_pooling.py [--threads 1] [--seconds 3] [--device cpu]

Writes _build/results/bench_pooling.json: ``<model>/train_step_library_ms``,
``<model>/train_step_aann_ms``, ``<model>/train_speedup``, ``<model>/eval_library_ms``,
``<model>/eval_aann_ms``, ``<model>/eval_speedup``, ``<model>/identical``, ``threads``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from aann.models import get_model
from aann.pooling import MaxPool2d
from aann.results import write_results
from aann.runtime import default_device
from timing import timed_until  # benchmarks/timing.py: the script's folder is on sys.path

# the book's networks with 2x2 pooling, and their inputs (channels, side, classes)
MODELS = {"mnist_net": (1, 28, 10), "car_net": (1, 96, 3), "alexnet_cifar": (3, 32, 10), "vgg_cifar": (3, 32, 10)}
FAST_FORWARD = MaxPool2d.forward


def _use(arm: str) -> None:
    MaxPool2d.forward = FAST_FORWARD if arm == "aann" else nn.MaxPool2d.forward


def measure(name: str, seconds: float, device) -> dict:
    channels, side, classes = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    # binary images: blank regions tie in every pooling window, as MNIST's background does
    x = torch.rand(128, channels, side, side, generator=gen).round().to(device)
    y = torch.randint(0, classes, (128,), generator=gen).to(device)
    x_eval = torch.rand(2000, channels, side, side, generator=gen).round().to(device)
    torch.manual_seed(0)
    start = get_model(name).to(device)
    models = {arm: get_model(name).to(device) for arm in ("library", "aann")}
    optimizers = {}
    for arm, model in models.items():
        model.load_state_dict(start.state_dict())
        optimizers[arm] = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = {}
    for arm in ("library", "aann", "library", "aann"):  # twice each, interleaved: the second reading counts
        _use(arm)
        model, opt = models[arm], optimizers[arm]

        def step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return 1

        def evaluate():
            with torch.inference_mode():
                model.eval()
                model(x_eval)
                model.train()
            return 1

        steps, s = timed_until(step, seconds, device)
        out[f"{name}/train_step_{arm}_ms"] = 1000 * s / steps
        out[f"{name}/train_steps_{arm}"] = steps
        calls, s = timed_until(evaluate, seconds, device)
        out[f"{name}/eval_{arm}_ms"] = 1000 * s / calls
    _use("aann")
    out[f"{name}/train_speedup"] = out[f"{name}/train_step_library_ms"] / out[f"{name}/train_step_aann_ms"]
    out[f"{name}/eval_speedup"] = out[f"{name}/eval_library_ms"] / out[f"{name}/eval_aann_ms"]
    # the arms took different numbers of steps: replay the same number on fresh copies to compare
    out[f"{name}/identical"] = float(_same_training(name, start, x, y, device))
    print(f"{name}: training step {out[f'{name}/train_step_library_ms']:.1f} -> {out[f'{name}/train_step_aann_ms']:.1f} ms "
          f"({out[f'{name}/train_speedup']:.2f}x), evaluation {out[f'{name}/eval_library_ms']:.1f} -> "
          f"{out[f'{name}/eval_aann_ms']:.1f} ms ({out[f'{name}/eval_speedup']:.2f}x), "
          f"identical weights: {bool(out[f'{name}/identical'])}", flush=True)
    return out


def _same_training(name: str, start: nn.Module, x, y, device, steps: int = 5) -> bool:
    weights = []
    for arm in ("library", "aann"):
        _use(arm)
        model = get_model(name).to(device)
        model.load_state_dict(start.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(1)  # the same dropout masks in both arms
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        weights.append(model.state_dict())
    _use("aann")
    return all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per arm and measurement")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    metrics = {"threads": torch.get_num_threads()}
    for name in args.models:
        metrics.update(measure(name, args.seconds, device))
    path = write_results("bench_pooling", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
