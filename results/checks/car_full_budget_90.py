# Rerun: .venv/bin/python results/checks/car_full_budget_90.py [seed ...]   (default: seed 0)
"""The car chapter's 90 % network at the full profile's budgets, on a CPU, while no GPU runs the
full profile: does more data and training lift imitation accuracy and driving?

Same calls and configurations as ``book/car_racing.md`` with ``profile="full"``: demonstrations
of 40 training, 8 validation and 8 test tracks of 1,000 frames (10 % DART noise), p-SIREN with
n1..n4 = 10, 40, 3, 6 and the pruning rate of Fig. 2b's levels (so the 90 % network is the one
the full sweep forks at 90 %, from the same cache entry), closed-loop driving on the 10 evaluation
tracks, and, for the first seed, DAgger with the full profile's 5 rounds of 10 tracks x 1,000
frames, the round chosen on whole validation episodes of the 8 validation tracks. Nothing here
selects on test frames or evaluation tracks. Writes ``car_full_budget_90_cpu.json`` beside this
script; trained networks and DAgger rounds come from the model cache when present."""
import sys
import time
from pathlib import Path

import numpy as np

from aann.car_racing import ExpertDriver, NetDriver, RandomDriver, evaluate_driver
from aann.dagger import DaggerConfig, dagger
from aann.demonstrations import DemoConfig, load_demonstrations, split_seeds
from aann.psiren import LEVELS_FIG2B, PSirenConfig, p_siren
from aann.results import write_results
from aann.training import accuracy

TRACKS = {"train": 40, "val": 8, "test": 8}
DEMO = DemoConfig(steps=1000, noise=0.1)
PSIREN = PSirenConfig(model="car_net", n1=10, n2=40, n3=3, n4=6)
DAGGER = DaggerConfig(rounds=5, tracks_per_round=10, steps=1000, epochs=3)
DRIVE_TRACKS = 10


def drive(driver, seeds, desc):
    eps = evaluate_driver(driver, seeds, workers=2, progress=False, desc=desc)
    returns = [e.total_return for e in eps]
    tiles = [e.tiles_visited for e in eps]
    print(f"{desc}: mean return {np.mean(returns):.1f} (per track {', '.join(f'{r:.0f}' for r in returns)}), "
          f"tiles {np.mean(tiles):.2f}", flush=True)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "min_return": float(np.min(returns)), "max_return": float(np.max(returns)),
            "mean_tiles": float(np.mean(tiles))}


if __name__ == "__main__":
    seeds = [int(a) for a in sys.argv[1:]] or [0]
    started = time.time()
    data, _ = load_demonstrations(TRACKS, DEMO, workers=2)
    print(f"demonstrations: {', '.join(f'{k} {len(v):,}' for k, v in data.items())} frames "
          f"({time.time() - started:.0f} s)", flush=True)
    drive_seeds = split_seeds("drive", DRIVE_TRACKS)
    metrics = {"n_train": len(data["train"]), "n_val": len(data["val"]), "n_test": len(data["test"]),
               "drive/n_tracks": DRIVE_TRACKS}
    metrics.update({f"random_policy/{k}": v for k, v in drive(RandomDriver(0), drive_seeds, "random policy").items()})
    # the ceiling of a 3-output driver: the expert acting through the same three classes
    metrics.update({f"expert3/{k}": v for k, v in drive(ExpertDriver(classes=True), drive_seeds, "expert, 3 classes").items()})
    nets = {}
    for s in seeds:
        t = time.time()
        run = p_siren({"train": data["train"], "val": data["val"]}, [90], seed=s, config=PSIREN,
                      rate_levels=LEVELS_FIG2B)[90.0]
        nets[s] = run.model.cpu()
        test_acc = accuracy(nets[s], data["test"])
        print(f"seed {s}: 90 % ternary, validation {run.val_acc:.4f}, test {test_acc:.4f} "
              f"({time.time() - t:.0f} s)", flush=True)
        metrics.update({f"seed{s}/val_acc": run.val_acc, f"seed{s}/test_acc": test_acc})
        metrics.update({f"seed{s}/{k}": v for k, v in drive(NetDriver(nets[s]), drive_seeds, f"seed {s} drives").items()})
    metrics["ternary90/test_acc_mean"] = float(np.mean([metrics[f"seed{s}/test_acc"] for s in seeds]))
    metrics["ternary90/mean_return"] = float(np.mean([metrics[f"seed{s}/mean_return"] for s in seeds]))

    t = time.time()
    s = seeds[0]
    dag = dagger(nets[s], data["train"], data["val"], split_seeds("val", TRACKS["val"]), DAGGER, seed=s,
                 workers=2)
    for r, (ret, acc) in enumerate(zip(dag.history["val_return"], dag.history["val_acc"])):
        test_acc = accuracy(dag.networks[r], data["test"])
        print(f"DAgger round {r}: validation return {ret:.1f}, validation frames {acc:.4f}, test frames {test_acc:.4f}",
              flush=True)
        metrics.update({f"dagger/round{r}/val_return": ret, f"dagger/round{r}/val_acc": acc,
                        f"dagger/round{r}/test_acc": test_acc})
    print(f"DAgger chose round {dag.best_round} ({time.time() - t:.0f} s)", flush=True)
    metrics.update({"dagger/best_round": dag.best_round, "dagger/rounds": len(dag.networks) - 1,
                    "dagger/train_frames": dag.history["frames"][-1]})
    metrics.update({f"dagger/{k}": v for k, v in drive(NetDriver(dag.model.cpu()), drive_seeds, "DAgger driver").items()})
    metrics["wall_time_s"] = time.time() - started
    out = write_results("car_full_budget_90_cpu", metrics, profile="check", device="cpu",
                        out_dir=Path(__file__).resolve().parent)
    print(f"wrote {out} ({metrics['wall_time_s']:.0f} s)")
