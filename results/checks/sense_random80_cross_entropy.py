# Rerun: .venv/bin/python results/checks/sense_random80_cross_entropy.py [steps]  (CPU; resumable)
"""SENSE with the cross-entropy fitness (``SenseConfig(fitness="cross_entropy")``) from the random
80 %-sparse MNIST net (seed 0, the chapter's start), random-layer schedule of Fig. 8a (blocks of up to
3 steps), 30 neighbours a step, ``steps`` steps (default 2,000), selection on 2,000 validation
images (the chapter's full profile uses 5,000; scoring a step's 30 neighbours on this CPU takes,
with 5,000 / 2,000 images, 8.5 / 2.9 s in layer 1.0, 0.34 / 0.14 s in 2.0, 0.015 / 0.007 s in fc,
measured 2026-11-22 with the evaluator's image chunks of 2**20 elements, since raised to 2**22 after
``benchmarks/bench_sense_step.py``: the cost grows with the images, and layer 1.0's steps dominate). The test set (all 10,000 images) is evaluated afterwards on the network the search held
every 100 steps (a float64 forward pass); it is never used to select. Checkpointed in the model
cache: a stopped run resumes. Prints one line per 100 steps (validation accuracy and loss, test
accuracy, neighbours evaluated, accepted moves per layer) and writes them, with the search's wall
time (when it ran in this call), to ``sense_random80_cross_entropy_cpu.json`` beside this script
(the chapter shows it)."""
import sys
import time
from pathlib import Path

import numpy as np

from aann.data import load_splits
from aann.neighbours import NeighbourEvaluator
from aann.results import write_results
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    d = load_splits("mnist", download=True)
    select, test = d["val"].subset(2_000, seed=seed), d["test"]
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    cfg = SenseConfig(schedule="random", steps=steps, block=3, neighbours=30, fitness="cross_entropy", seed=seed)
    print(f"selection {len(select):,} validation images, test {len(test):,}; {cfg}", flush=True)
    path = checkpoint_path("random80-cross-entropy", start, select, cfg)
    ran = not path.exists()
    t = time.time()
    res = sense(start, select, cfg, checkpoint=path)
    search_s = time.time() - t
    print(f"search: {search_s:.0f} s" + ("" if ran else " (resumed from its checkpoint)"), flush=True)
    h = res.history
    members = np.cumsum(h["moved"])  # the family member the search held after each step
    layers = np.array([layer for layer, _, _ in res.path])
    metrics = {"steps": steps, "neighbours": cfg.neighbours, "n_select": len(select), "n_test": len(test)}
    if ran:
        metrics["search_s"] = search_s
    for s in [0] + list(range(100, steps + 1, 100)):
        i = int(members[s - 1]) if s else 0
        moved = {layer: int((layers[:i] == layer).sum()) for layer in ("1.0", "2.0", "fc")}
        val = h["val_acc"][s - 1] if s else res.member_val[0]
        evaluations = h["evaluations"][s - 1] if s else 0
        test_acc = NeighbourEvaluator(res.member(i), test).base_accuracy
        metrics.update({f"curve/{s}/val_acc": val, f"curve/{s}/test_acc": test_acc, f"curve/{s}/evaluations": evaluations,
                        **{f"curve/{s}/moves/{layer}": n for layer, n in moved.items()}})
        loss = f"{-h['fitness'][s - 1]:.4f}" if s else "-"
        print(f"step {s:5d}  validation {val:.4f} (loss {loss})  test {test_acc:.4f}  evaluations {evaluations:,}  "
              f"moves {moved}", flush=True)
    metrics.update({"final/val_acc": h["val_acc"][-1], "final/test_acc": metrics[f"curve/{steps}/test_acc"],
                    "final/evaluations": h["evaluations"][-1]})
    out = write_results("sense_random80_cross_entropy_cpu", metrics, profile="check", device="cpu",
                        out_dir=Path(__file__).resolve().parent)
    print(f"wrote {out}")
