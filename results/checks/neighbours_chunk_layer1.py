# Rerun: .venv/bin/python results/checks/neighbours_chunk_layer1.py  (CPU, about 5 minutes)
"""Layer 1.0 of the neighbour benchmark: 4,096-neighbour steps with image chunks of 2**20 against
2**22 elements (the default), interleaved, on the first 2,000 test images."""
import sys, time, torch
sys.path.insert(0, "benchmarks")
from bench_neighbours import bench_net
from aann.data import load_splits, Split
from aann.neighbours import NeighbourEvaluator, sample_neighbours, neighbourhood_size
test = load_splits("mnist", download=True)["test"]
sub = Split(test.x[:2000], test.y[:2000])
net = bench_net("cpu")
pool = sample_neighbours(net, "1.0", 8192, seed=0)
for chunk in (2**20, 2**22, 2**20, 2**22):
    ev = NeighbourEvaluator(net, sub, chunk_elems=chunk)
    ev.evaluate(pool[:64], batch_size=64)
    t = time.perf_counter(); ev.evaluate(pool[:4096], batch_size=4096); dt = time.perf_counter() - t
    print(f"chunk 2**{chunk.bit_length()-1}: {4096/dt:.1f} neighbours/s on 2,000 images", flush=True)
