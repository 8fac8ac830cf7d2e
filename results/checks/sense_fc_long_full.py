# Rerun: .venv/bin/python results/checks/sense_fc_long_full.py  (CPU, about 40 minutes; resumable)
"""The sense chapter's long fc-only search with its full-profile parameters, run on this CPU: SENSE
from the random 80 %-sparse MNIST net (seed 0), 30,000 steps of 100 fc neighbours, selection on
5,000 validation images, test on 10,000 test images (recorded, never used to choose). Same call,
same checkpoint file as the chapter's full profile (``checkpoint_path("random80-fc-long", ...)``),
checkpointed every 500 steps, so an interrupted run resumes where it stopped."""
import time

from aann.data import load_splits
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    d = load_splits("mnist", download=True)
    select, test = d["val"].subset(5_000, seed=seed), d["test"].subset(10_000, seed=seed)
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    cfg = SenseConfig(schedule="fc", steps=30_000, block=10**6, neighbours=100, seed=seed)
    path = checkpoint_path("random80-fc-long", start, select, cfg)
    t = time.time()
    while True:
        res = sense(start, select, cfg, report=test, checkpoint=path, stop_after=500, progress=False)
        h = res.history
        print(f"step {res.step:6d}  validation {h['val_acc'][-1]:.4f}  test {h['test_acc'][-1]:.4f}  "
              f"evaluations {h['evaluations'][-1]:,}  moves {len(res.path)}  {time.time() - t:.0f} s", flush=True)
        if res.step >= cfg.steps:
            break
