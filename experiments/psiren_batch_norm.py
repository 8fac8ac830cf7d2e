"""p-SIREN with and without a BatchNorm2d after each convolution, at 90 and 95 % sparsity.

The full profile's p-SIREN budget (``aann.profiles``, chapter ``sparse_ternary``), one seed, the
whole training sets of MNIST and Fashion-MNIST; the variant ``batch_norm`` is the PyTorch tutorial
CNN whose module names and shapes the paper's net shares (``get_model("mnist_net",
batch_norm=True)``). The data sets train side by side, one process each, into the model cache (a
rerun reads them back in seconds). Per data set, level and variant: validation accuracy after steps
1 (dense), 3 (pruned) and 4 (ternary), test accuracy after step 4 (reported, never used to
choose), and the share of zeros the global ranking put into each layer. The sparse-ternary chapter
quotes it. About 26 minutes a variant on a 2-core CPU.

    python experiments/psiren_batch_norm.py            # both variants, both data sets
"""

from __future__ import annotations

from dataclasses import replace

from aann.data import load_splits
from aann.experiments import parser, write_experiment
from aann.profiles import budgets
from aann.psiren import p_siren, p_siren_parallel
from aann.runtime import default_device
from aann.ternary import sparse_layers
from aann.training import accuracy

LEVELS = (90, 95)
DATASETS = ("mnist", "fashion_mnist")


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    profile = "quick" if args.quick else "full"
    budget = budgets("sparse_ternary", profile)
    device = default_device() if args.device is None else args.device
    train_size = 1_000 if args.quick else budget.train_size
    variants = {"baseline": budget.config, "batch_norm": replace(budget.config, model_kwargs={"batch_norm": True})}
    datasets = DATASETS
    if args.quick:  # seconds: MNIST, a few epochs, pruned per layer (a barely trained fc would lose every weight)
        variants = {k: replace(v, n1=1, n2=2, n3=1, n4=1, scope="layer") for k, v in variants.items()}
        datasets = DATASETS[:1]
    # the pruning rate follows the profile's largest level, as in the chapter's sweep
    rate_levels = list(budget.levels)
    metrics = {}
    for name, config in variants.items():
        jobs = [dict(dataset=d, seed=args.seed, levels=list(LEVELS), config=config, rate_levels=rate_levels,
                     train_size=train_size) for d in datasets]
        p_siren_parallel(jobs, workers=1 if args.quick else len(jobs), device=device)
        for dataset in datasets:
            data = load_splits(dataset, train_size=train_size, device=device, download=True)
            runs = p_siren(data, list(LEVELS), seed=args.seed, config=config, device=device, rate_levels=rate_levels,
                           progress=False)
            for level, run in runs.items():
                h = run.history
                last = {k: [v for s, v in zip(h["step"], h["val_acc"]) if s == k][-1] for k in (1, 3)}
                key = f"{name}/{dataset}/{level:g}"
                metrics |= {f"{key}/val_acc": run.val_acc, f"{key}/test_acc": accuracy(run.model, data["test"]),
                            f"{key}/val_acc_step1": last[1], f"{key}/val_acc_step3": last[3],
                            **{f"{key}/sparsity/{n}": layer.sparsity for n, layer in sparse_layers(run.model).items()}}
                print(f"{key}: validation {run.val_acc:.4f}", flush=True)
    print(f"wrote {write_experiment('psiren_batch_norm', metrics, args, device).name}")


if __name__ == "__main__":
    main()
