# Rerun: python results/checks/car_full_profile_sense.py {conv,all,ce} [--device cuda] [--checkpoint-every 30]
"""One of the car chapter's three full-profile SENSE searches from a random 80 %-sparse network,
run into the checkpoint the chapter resumes from, ahead of the chapter, where a GPU is lent for
minutes and not for the chapter's whole full profile.

The search is the one ``book/car_racing.md`` runs with ``profile="full"`` and ``seed=0``: same
start, same 5,000 validation frames that select, same configuration, hence the same checkpoint file
(``aann.sense.checkpoint_path``, keyed by all three). The chapter then finds the search done, or
resumes it where it stopped (a killed run loses at most ``--checkpoint-every`` seconds). It needs
only the validation and test tracks of the full profile's demonstrations, already generated. The
searches do not depend on each other: the three can run side by side, one process each. Prints the
search's selection and test accuracy at its end and the checkpoint's path.

The three finished checkpoints of the H200 run in the log are committed beside this script:
``tar xf results/checks/car_full_profile_sense_checkpoints.tar -C _build/cache`` puts them where the
chapter looks (a finished search is read without being evaluated again)."""
import argparse
import time
from dataclasses import replace

import torch

from aann.demonstrations import DemoConfig, load_tracks, split_seeds
from aann.runtime import default_device
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense

SEED = 0
TRACKS = {"val": 8, "test": 8}  # the chapter's full profile
DEMO = DemoConfig(steps=1000, noise=0.1)
SELECT = 5_000
SEARCHES = {  # key: (the chapter's name of the search, its full-profile configuration)
    "conv": ("conv layers (paper)", SenseConfig(schedule="random", layers=("1.0", "2.0"), steps=2000, block=3,
                                                 neighbours=30)),
    "all": ("all layers", SenseConfig(schedule="random", steps=2000, block=3, neighbours=30)),
    "ce": ("all layers, cross-entropy", SenseConfig(schedule="random", steps=4000, block=3, neighbours=30,
                                                    fitness="cross_entropy")),
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("search", choices=sorted(SEARCHES))
    parser.add_argument("--device", default=None)
    parser.add_argument("--checkpoint-every", type=float, default=30.0, help="seconds between checkpoints")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    val, test = (load_tracks(split_seeds(k, n), DEMO)[0].to(device) for k, n in TRACKS.items())
    select = val.subset(SELECT, seed=SEED)
    start80 = random_sparse_ternary("car_net", 80, seed=SEED).to(device)
    name, cfg = SEARCHES[args.search]
    cfg = replace(cfg, seed=SEED)
    path = checkpoint_path(f"car-random80-{name}", start80, select, cfg)
    print(f"{name}: {cfg.steps} steps on {device}, {len(select)} selection frames; checkpoint {path.name}", flush=True)
    started = time.time()
    result = sense(start80, select, cfg, report=test, checkpoint=path, checkpoint_every=args.checkpoint_every)
    h = result.history
    print(f"{name}: step {result.step} of {cfg.steps} in {time.time() - started:.0f} s; selection accuracy "
          f"{h['val_acc'][-1]:.4f} (start {result.member_val[0]:.4f}), test {h['test_acc'][-1]:.4f}, "
          f"{len(result.path)} moves", flush=True)
