# Rerun: .venv/bin/python results/checks/neighbours_chunk_layer1.py  (CPU, about 5 minutes)
"""Layer 1.0 of the neighbour benchmark: 4,096-neighbour steps with image chunks of 2**20 against
2**22 elements (the default), interleaved, on the first 2,000 test images."""
import sys
import time

sys.path.insert(0, "benchmarks")  # run from the repository root: the benchmark's own network

from bench_neighbours import bench_net  # noqa: E402

from aann.data import Split, load_splits  # noqa: E402
from aann.neighbours import NeighbourEvaluator, sample_neighbours  # noqa: E402

test = load_splits("mnist", download=True)["test"]
images = Split(test.x[:2000], test.y[:2000])
net = bench_net("cpu")
pool = sample_neighbours(net, "1.0", 8192, seed=0)
for chunk in (2**20, 2**22, 2**20, 2**22):
    evaluator = NeighbourEvaluator(net, images, chunk_elems=chunk)
    evaluator.evaluate(pool[:64], batch_size=64)  # warm-up
    start = time.perf_counter()
    evaluator.evaluate(pool[:4096], batch_size=4096)
    print(f"chunk 2**{chunk.bit_length() - 1}: {4096 / (time.perf_counter() - start):.1f} neighbours/s on 2,000 images",
          flush=True)
