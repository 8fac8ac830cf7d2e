# Rerun: .venv/bin/python results/checks/car_sense_fitness_quick_data.py 600 cross_entropy   (and ... 600 accuracy)
"""The two fitnesses side by side on the car chapter's quick data: SENSE from the random 80 % car net
(seed 0), all four layers, random-layer schedule (blocks of 3), 30 neighbours a step, ``steps`` steps,
selection on the chapter's 500 validation frames, test on its 2 quick test tracks (800 frames, only
recorded). Prints the validation and test accuracy and the fitness every 50 steps, and the accepted
moves per layer. Not checkpointed (a few minutes on this CPU)."""
import collections
import sys
import time

from aann.demonstrations import DemoConfig, load_demonstrations
from aann.sense import SenseConfig, random_sparse_ternary, sense

if __name__ == "__main__":
    data, _ = load_demonstrations({"train": 8, "val": 2, "test": 2}, DemoConfig(steps=400, noise=0.1), workers=2)
    select = data["val"].subset(500, seed=0)
    start = random_sparse_ternary("car_net", 80, seed=0)
    fitness = sys.argv[2]
    cfg = SenseConfig(schedule="random", steps=int(sys.argv[1]), block=3, neighbours=30, fitness=fitness, seed=0)
    t = time.time()
    r = sense(start, select, cfg, report=data["test"], progress=False)
    h = r.history
    for s in range(0, len(h["val_acc"]), 50):
        print(s, f"val {h['val_acc'][s]:.4f} test {h['test_acc'][s]:.4f} fit {h['fitness'][s]:.4f}")
    print(fitness, f"val {h['val_acc'][-1]:.4f} test {h['test_acc'][-1]:.4f} evals {h['evaluations'][-1]} "
          f"{time.time() - t:.0f}s", flush=True)
    print(collections.Counter(layer for layer, _, _ in r.path))
