# Rerun: .venv/bin/python results/checks/sense_anneal_full.py  (CPU, about 20 minutes a search; resumable)
"""The sense chapter's annealing comparison with its full-profile parameters, run on this CPU after
annealing changed to a random (Metropolis) proposal: from the random 80 %-sparse MNIST net (seed 0),
the fc layer, 3,000 steps of 500 sampled neighbours, selection on 5,000 validation images, test on
10,000 (recorded, never used to choose): the climb that moves on ties (Alg. 2), the strict climb, and
annealing with T from 0.01 to 0.0005 (accuracy units). Same calls and checkpoint files as the
chapter's full profile, so an interrupted run resumes where it stopped."""
import time
from dataclasses import replace

import numpy as np

from aann.data import load_splits
from aann.neighbours import NeighbourEvaluator
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    d = load_splits("mnist", download=True)
    select, test = d["val"].subset(5_000, seed=seed), d["test"].subset(10_000, seed=seed)
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    plain = SenseConfig(schedule="fc", block=10**6, seed=seed, steps=3000, neighbours=500)
    # annealing first: the two climbs did not change with it (the full profile's GPU run has them)
    runs = {"annealing": replace(plain, accept_ties=False, temperature=(0.01, 0.0005)),
            "climb (ties move)": plain, "strict climb": replace(plain, accept_ties=False)}
    for name, cfg in runs.items():
        t = time.time()
        res = sense(start, select, cfg, report=test, checkpoint=checkpoint_path("anneal", start, select, cfg),
                    progress=False)
        val = np.array([res.member_val[0]] + res.history["val_acc"])
        b = res.best_member
        print(f"{name:18s} best validation {res.member_val[b]:.4f}  test of best "
              f"{NeighbourEvaluator(res.member(b), test).base_accuracy:.4f}  final validation {val[-1]:.4f}  "
              f"moves {len(res.path)}  downhill moves {int((np.diff(val) < 0).sum())}  "
              f"evaluations {res.history['evaluations'][-1]:,}  {time.time() - t:.0f} s", flush=True)
