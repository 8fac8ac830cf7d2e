# Rerun: .venv/bin/python results/checks/psiren_batch_norm.py [--mnist-only] [variant ...]  (2-core CPU: 26 min a variant)
"""p-SIREN at 90 and 95 % on the whole training sets (MNIST, Fashion-MNIST) with the full profile's
budgets, one seed, with a BatchNorm2d after each convolution (``get_model("mnist_net",
batch_norm=True)``): the PyTorch tutorial CNN whose module names (``layer1.0``, ``layer2.0``,
``fc``) and shapes (16 and 32 filters 5x5, padding 2, fc 1568 x 10) the paper's net shares.

The two data sets train side by side, one process each (``p_siren_parallel``), into the model
cache; the networks are then read back (a second run reads them from the cache in seconds) and
their numbers written to ``results/checks/psiren_<variant>_cpu.json``. Validation accuracy
decides; test accuracy is printed beside it, never used to choose.
"""
import sys
import time
from dataclasses import replace

import torch

from aann.data import load_splits
from aann.paths import project_root
from aann.psiren import LEVELS_FIG2, p_siren, p_siren_parallel, reference_budget
from aann.results import write_results
from aann.ternary import sparse_layers
from aann.training import accuracy

LEVELS = [90, 95]

if __name__ == "__main__":
    full = reference_budget("full")["config"]
    variants = {
        "baseline": full,
        "batch_norm": replace(full, model_kwargs={"batch_norm": True}),
    }
    args = sys.argv[1:]
    datasets = ["mnist", "fashion_mnist"]
    if "--mnist-only" in args:
        args.remove("--mnist-only")
        datasets = ["mnist"]
    names = args or ["batch_norm"]
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(variants)}")
    for name in names:
        config = variants[name]
        t = time.time()
        metrics = {}
        jobs = [dict(dataset=d, seed=0, levels=LEVELS, config=config, rate_levels=LEVELS_FIG2)
                for d in datasets]
        p_siren_parallel(jobs, workers=len(jobs))
        print(f"{name}: {config}  (trained side by side in {time.time() - t:.0f} s)", flush=True)
        for dataset in datasets:
            data = load_splits(dataset)
            runs = p_siren(data, LEVELS, seed=0, config=config, rate_levels=LEVELS_FIG2, progress=False)
            for p, run in runs.items():
                h = run.history
                step = lambda k: [round(v, 4) for s, v in zip(h["step"], h["val_acc"]) if s == k]
                print(f"  {dataset} {p:g} %: step 1 {step(1)}", flush=True)
                print(f"    end of step 2 {step(2)[-1]:.4f}; step 3 {step(3)}; step 4 {step(4)}", flush=True)
                test_acc = accuracy(run.model, data["test"])
                print(f"    val {run.val_acc:.4f}  test {test_acc:.4f}", flush=True)
                metrics |= {f"{dataset}/{p:g}/test_acc": test_acc, f"{dataset}/{p:g}/val_acc": run.val_acc,
                            f"{dataset}/{p:g}/val_acc_step1": step(1)[-1], f"{dataset}/{p:g}/val_acc_step3": step(3)[-1]}
                layers = sparse_layers(run.model)
                print("    per layer: sparsity % " + ", ".join(f"{n} {100 * l.sparsity:.1f}" for n, l in layers.items())
                      + "; scale " + ", ".join(f"{n} {l.scale.abs().mean().item():.4g}" for n, l in layers.items())
                      + "; smallest running variance of each norm "
                      + ", ".join(f"{m.running_var.min().item():.3g}" for m in run.model.modules()
                                  if isinstance(m, torch.nn.BatchNorm2d)), flush=True)
                for n, l in layers.items():
                    metrics[f"{dataset}/{p:g}/sparsity/{n}"] = l.sparsity
        out = write_results(f"psiren_{name}_cpu", metrics, profile="check", device="cpu",
                            out_dir=project_root() / "results" / "checks")
        print(f"wrote {out}", flush=True)
