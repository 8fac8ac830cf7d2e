# Rerun: .venv/bin/python results/checks/sense_random_layer_long.py [minutes]  (CPU; resumable)
"""The random-layer schedule of Fig. 8a, run long on this CPU, against the fc-only search of
``sense_fc_long.py`` (same start: the random 80 %-sparse MNIST net, seed 0; same selection and test
images: 2,000 validation, 2,000 test, the test only recorded). Blocks of up to 3 steps in a random
layer, 30 neighbours a step, up to 20,000 steps; checkpointed in the model cache, so a stopped run
resumes. Stops after ``minutes`` of wall time in this call (default 35). Each line: step, validation
and test accuracy, neighbours evaluated, accepted moves per layer, seconds."""
import sys
import time

from aann.data import load_splits
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 35.0
    d = load_splits("mnist", download=True)
    select, test = d["val"].subset(2_000, seed=seed), d["test"].subset(2_000, seed=seed)
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    cfg = SenseConfig(schedule="random", steps=20_000, block=3, neighbours=30, seed=seed)
    path = checkpoint_path("random80-random-layer-long", start, select, cfg)
    t = time.time()
    while time.time() - t < 60 * minutes:
        res = sense(start, select, cfg, report=test, checkpoint=path, stop_after=200, progress=False)
        h = res.history
        moved = {layer: sum(1 for (l, _, _) in res.path if l == layer) for layer in ("1.0", "2.0", "fc")}
        print(f"step {res.step:6d}  validation {h['val_acc'][-1]:.4f}  test {h['test_acc'][-1]:.4f}  "
              f"evaluations {h['evaluations'][-1]:,}  moves {moved}  {time.time() - t:.0f} s", flush=True)
        if res.step >= cfg.steps:
            break
