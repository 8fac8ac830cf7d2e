"""p-SIREN trajectories one after the other in this process (``workers=1``, all threads) against
side by side in processes (``workers=2``, the threads split between them): the choice the sparse
ternary chapter makes on a CPU. Two jobs, MNIST and Fashion-MNIST, as in the chapter's quick
profile, on a small budget; each arm trains into an empty cache of its own.

    python benchmarks/bench_psiren_workers.py [--train-size 15000] [--device cpu]

Writes _build/results/bench_psiren_workers.json: ``workers1_s``, ``workers2_s`` (wall time for
both jobs), ``bench/psiren_workers_speedup`` (the first over the second), ``threads`` (this
process's torch threads), ``train_size``, ``epochs`` (per job).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from aann.psiren import PSirenConfig, p_siren_parallel
from aann.results import write_results
from aann.runtime import default_device
from timing import timed  # benchmarks/timing.py: the script's folder is on sys.path

CONFIG = PSirenConfig(n1=1, n2=2, n3=1, n4=1)
LEVELS = [50, 90]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=15_000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    jobs = [dict(dataset=name, seed=0, levels=LEVELS, config=CONFIG, train_size=args.train_size)
            for name in ("mnist", "fashion_mnist")]
    metrics = {"threads": torch.get_num_threads(), "train_size": args.train_size,
               "epochs": CONFIG.n1 + CONFIG.n2 + len(LEVELS) * (CONFIG.n3 + CONFIG.n4)}
    saved = os.environ.get("AANN_CACHE")
    try:
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["AANN_CACHE"] = cache  # an empty cache: both arms train everything
                _, seconds = timed(lambda: p_siren_parallel(jobs, workers, device=device), device)
            metrics[f"workers{workers}_s"] = seconds
            print(f"workers={workers}: {seconds:.1f} s", flush=True)
    finally:
        if saved is None:
            os.environ.pop("AANN_CACHE", None)
        else:
            os.environ["AANN_CACHE"] = saved
    metrics["bench/psiren_workers_speedup"] = metrics["workers1_s"] / metrics["workers2_s"]
    print(f"two processes are {metrics['bench/psiren_workers_speedup']:.2f}x as fast as one")
    path = write_results("bench_psiren_workers", metrics, profile="bench", device=device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
