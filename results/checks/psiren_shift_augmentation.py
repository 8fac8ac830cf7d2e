# Rerun: .venv/bin/python results/checks/psiren_shift_augmentation.py [variant ...]  (CPU, ~12 min a variant)
"""p-SIREN at 90 % on the whole MNIST training set with the full profile's budgets, with and
without random translations of the training images (by up to 2 pixels). Validation decides;
the test accuracy is printed beside it, never used to choose."""
import sys
import time
from dataclasses import replace

from aann.data import load_splits
from aann.psiren import LEVELS_FIG2, p_siren, reference_budget
from aann.training import accuracy

if __name__ == "__main__":
    full = reference_budget("full")["config"]
    variants = {
        "baseline": full,
        "shift2": replace(full, shift=2),
        "shift2_channel_n4x2": replace(full, shift=2, n4=2 * full.n4, model_kwargs={"scale": "channel"}),
    }
    names = sys.argv[1:] or list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(variants)}")
    data = load_splits("mnist")
    for name in names:
        t = time.time()
        run = p_siren(data, [90], seed=0, config=variants[name], rate_levels=LEVELS_FIG2, progress=False)[90.0]
        h = run.history
        print(f"{name}: {variants[name]}", flush=True)
        print(f"  val per epoch, step 1 {[round(v, 4) for s, v in zip(h['step'], h['val_acc']) if s == 1]}", flush=True)
        print(f"  end of step 2 {h['val_acc'][[i for i, s in enumerate(h['step']) if s == 2][-1]]:.4f}; "
              f"step 3 {[round(v, 4) for s, v in zip(h['step'], h['val_acc']) if s == 3]}; "
              f"step 4 {[round(v, 4) for s, v in zip(h['step'], h['val_acc']) if s == 4]}", flush=True)
        print(f"  val {run.val_acc:.4f}  test {accuracy(run.model, data['test']):.4f}  ({time.time() - t:.0f} s)", flush=True)
