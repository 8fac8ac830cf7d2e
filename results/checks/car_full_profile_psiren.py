# Rerun: .venv/bin/python results/checks/car_full_profile_psiren.py [workers]   (default: one per seed)
"""The car chapter's full-profile p-SIREN sweeps (seeds 0, 1, 2 at Fig. 2b's 19 levels), trained into
the model cache ahead of the chapter, on a CPU, while no GPU runs the full profile.

The jobs are the ones ``book/car_racing.md`` builds with ``profile="full"`` (same demonstrations,
levels, seeds and configuration, hence the same cache keys): the chapter then reads the networks
from the cache instead of training them. Only the number of processes differs. On a 2-core CPU the
chapter starts one worker per core, so the third seed would train alone after the first two, one
core idle for a third of the time; here all three run side by side (one thread each), which ends
about a quarter sooner. Prints each level's validation accuracy as the cache holds it (no test
frames are read)."""
import sys
import time

from aann.demonstrations import DemoConfig, DemonstrationSplits
from aann.psiren import LEVELS_FIG2B, PSirenConfig, p_siren, p_siren_parallel

TRACKS = {"train": 40, "val": 8}  # the chapter's full profile; p-SIREN never reads test
DEMO = DemoConfig(steps=1000, noise=0.1)
PSIREN = PSirenConfig(model="car_net", n1=10, n2=40, n3=3, n4=6)
SEEDS = [0, 1, 2]

if __name__ == "__main__":
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else len(SEEDS)
    source = DemonstrationSplits(TRACKS, DEMO)
    jobs = [dict(dataset=source, seed=s, levels=LEVELS_FIG2B, config=PSIREN) for s in SEEDS]
    started = time.time()
    print(f"{len(jobs)} p-SIREN sweeps on {source}, {workers} workers", flush=True)
    p_siren_parallel(jobs, workers, device="cpu")
    print(f"trained in {time.time() - started:.0f} s", flush=True)
    data = source("cpu")
    for s in SEEDS:
        runs = p_siren(data, LEVELS_FIG2B, seed=s, config=PSIREN, device="cpu", progress=False)  # cache hits
        print(f"seed {s}: validation " + ", ".join(f"{p:g}: {r.val_acc:.4f}" for p, r in runs.items()), flush=True)
