# Rerun: .venv/bin/python results/checks/sense_fc_then_all_layers.py [steps [until]]  (CPU; resumable)
"""Does the random 80 % MNIST net pass its fc-only plateau when the convolutions move too?

Start: the last member of ``sense_fc_long_full.py``'s search (SENSE from the random 80 %-sparse net,
seed 0, 23,500 fc-only steps of 100 neighbours, selection on 5,000 validation images: 87.5 %
validation, 83.2 % test; read from that search's checkpoint in the model cache, so run that script
first). From there a random-layer search over all three layers (blocks of up to 3 steps, 30
neighbours a step), same selection and test images (the test is recorded, never used to choose).
Since a move updates the evaluator's caches incrementally, a conv-layer step costs its neighbours'
evaluation only. Checkpointed every 50 steps in the model cache: an interrupted run resumes;
``until`` stops this call at that step. Each report line also gives, per layer, how far the best of
a step's 30 neighbours fell short of the current network on the validation images (median and
maximum over the steps in that layer, in points): a hill-climb moves only where it is >= 0."""
import sys
import time

import numpy as np

from aann.data import load_splits
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    until = int(sys.argv[2]) if len(sys.argv) > 2 else steps
    d = load_splits("mnist", download=True)
    select, test = d["val"].subset(5_000, seed=seed), d["test"].subset(10_000, seed=seed)
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    fc_cfg = SenseConfig(schedule="fc", steps=30_000, block=10**6, neighbours=100, seed=seed)
    fc_path = checkpoint_path("random80-fc-long", start, select, fc_cfg)
    if not fc_path.exists():
        sys.exit(f"no checkpoint of the fc-only search at {fc_path}: run results/checks/sense_fc_long_full.py first")
    fc = sense(start, select, fc_cfg, report=test, checkpoint=fc_path, stop_after=0, progress=False)
    print(f"fc-only search at step {fc.step}: validation {fc.history['val_acc'][-1]:.4f}, "
          f"test {fc.history['test_acc'][-1]:.4f}, {len(fc.path)} moves", flush=True)
    net = fc.network
    cfg = SenseConfig(schedule="random", steps=steps, block=3, neighbours=30, seed=seed)
    path = checkpoint_path("random80-fc-then-all", net, select, cfg)
    t = time.time()
    while True:
        res = sense(net, select, cfg, report=test, checkpoint=path, stop_after=50, progress=False)
        h = res.history
        moved = {layer: sum(1 for (l, _, _) in res.path if l == layer) for layer in ("1.0", "2.0", "fc")}
        # the current network's validation accuracy before each step: the best neighbour's shortfall
        before = [res.member_val[0]] + h["val_acc"][:-1]
        gaps = {layer: 100 * np.array([b - c for l, b, c in zip(h["layer"], h["best_neighbour"], before) if l == layer])
                for layer in ("1.0", "2.0", "fc")}
        gap = "  ".join(f"{l}: {len(g)} steps, median {np.median(g):+.2f}, max {g.max():+.2f}" for l, g in gaps.items() if len(g))
        print(f"step {res.step:5d}  validation {h['val_acc'][-1]:.4f}  test {h['test_acc'][-1]:.4f}  "
              f"moves {moved}  {time.time() - t:.0f} s  best neighbour - current (points) {gap}", flush=True)
        if res.step >= min(cfg.steps, until):
            break
