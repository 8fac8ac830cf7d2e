# Rerun: .venv/bin/python results/checks/car_sense_random80_cross_entropy.py [steps] [fitness] [from_steps]
#   > results/checks/car_sense_random80_<fitness>_labels<version>.log
# (CPU; resumable; from_steps: continue the finished run of that many steps instead of starting afresh)
"""SENSE from the random 80 %-sparse car net (seed 0, the car chapter's start) with the
cross-entropy fitness (``SenseConfig(fitness="cross_entropy")``; ``fitness`` = accuracy runs the
paper's), over all four layers with the random-layer schedule (blocks of up to 3 steps), 30
neighbours a step, ``steps`` steps (default 2,000). Data: the full profile's demonstration tracks
(1,000 frames each, 10 % DART noise): selection on 2,000 frames drawn from the 8 validation tracks,
test on all 8,000 frames of the 8 test tracks, evaluated afterwards on the network the search held
every 100 steps; the test never selects. Checkpointed in the model cache: a stopped run resumes.
The finished search's checkpoint is also copied beside this script
(``car_sense_random80_<fitness>_labels<version>_checkpoint.pt``, committed), and ``from_steps``
extends that copy when the cache lacks the shorter run's: a later run on another machine goes on
from there instead of from step 0.
Prints one line per 100 steps and writes them, with the search's wall time (when it ran in this
call), to ``car_sense_random80_<fitness>_labels<version>_cpu.json`` beside this script, ``version``
being the demonstrations' ``FORMAT_VERSION`` (their class mapping: runs on labels 1 and 2 are
different data)."""
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from aann.demonstrations import FORMAT_VERSION, DemoConfig, load_demonstrations
from aann.neighbours import NeighbourEvaluator
from aann.results import write_results
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    fitness = sys.argv[2] if len(sys.argv) > 2 else "cross_entropy"
    from_steps = int(sys.argv[3]) if len(sys.argv) > 3 else None
    data, _ = load_demonstrations({"val": 8, "test": 8}, DemoConfig(steps=1000, noise=0.1), workers=2)
    select, test = data["val"].subset(2_000, seed=seed), data["test"]
    start = random_sparse_ternary("car_net", 80, seed=seed)
    cfg = SenseConfig(schedule="random", steps=steps, block=3, neighbours=30, fitness=fitness, seed=seed)
    print(f"selection {len(select):,} validation frames, test {len(test):,}; {cfg}", flush=True)
    path = checkpoint_path(f"car-random80-{fitness}", start, select, cfg)
    shorter = None if from_steps is None else checkpoint_path(f"car-random80-{fitness}", start, select,
                                                              replace(cfg, steps=from_steps))
    # the last run's checkpoint is committed beside this script: a cache on another machine lacks it
    kept = Path(__file__).resolve().with_name(f"car_sense_random80_{fitness}_labels{FORMAT_VERSION}_checkpoint.pt")
    if shorter is not None and not shorter.exists() and kept.exists():
        print(f"extending the committed checkpoint {kept.name}", flush=True)
        shorter = kept
    ran = not path.exists() and shorter is None
    t = time.time()
    res = sense(start, select, cfg, checkpoint=path, extends=shorter)
    search_s = time.time() - t
    shutil.copyfile(path, kept)
    print(f"search: {search_s:.0f} s" + ("" if ran else " (resumed from a checkpoint)"), flush=True)
    h = res.history
    members = np.cumsum(h["moved"])  # the family member the search held after each step
    layers = np.array([layer for layer, _, _ in res.path])
    names = ("1.0", "2.0", "fc1.0", "fc")
    metrics = {"steps": steps, "neighbours": cfg.neighbours, "n_select": len(select), "n_test": len(test)}
    if ran:
        metrics["search_s"] = search_s
    for s in [0] + list(range(100, steps + 1, 100)):
        i = int(members[s - 1]) if s else 0
        moved = {layer: int((layers[:i] == layer).sum()) for layer in names}
        val = h["val_acc"][s - 1] if s else res.member_val[0]
        evaluations = h["evaluations"][s - 1] if s else 0
        test_acc = NeighbourEvaluator(res.member(i), test).base_accuracy
        metrics.update({f"curve/{s}/val_acc": val, f"curve/{s}/test_acc": test_acc, f"curve/{s}/evaluations": evaluations,
                        **{f"curve/{s}/moves/{layer}": n for layer, n in moved.items()}})
        print(f"step {s:5d}  validation {val:.4f} (fitness {h['fitness'][s - 1] if s else float('nan'):.4f})  "
              f"test {test_acc:.4f}  evaluations {evaluations:,}  moves {moved}", flush=True)
    metrics.update({"final/val_acc": h["val_acc"][-1], "final/test_acc": metrics[f"curve/{steps}/test_acc"],
                    "final/evaluations": h["evaluations"][-1]})
    out = write_results(f"car_sense_random80_{fitness}_labels{FORMAT_VERSION}_cpu", metrics, profile="check", device="cpu",
                        out_dir=Path(__file__).resolve().parent)
    print(f"wrote {out}")
