"""SENSE from a random 80 %-sparse ternary network, tested along the way: a long search's curve.

The start is the chapters' own (``random_sparse_ternary(model, 80, seed)``: the sense chapter's MNIST
net or the car chapter's car net); the schedule is the random-layer one of the paper's Fig. 8a over
every layer (blocks of up to 3 steps), ``--neighbours`` neighbours a step, ``--fitness`` the
cross-entropy (beyond the paper) or the accuracy (the paper's). Selection on ``--select``
validation images (frames); the test split (all MNIST test images, or every frame of the full
profile's test tracks) is evaluated every ``--every`` steps on the network the search held, and
never selects. The search is checkpointed in the model cache: a stopped run resumes, and
``--steps`` larger than a finished run's continues it (``sense(..., extends=...)``). A finished
checkpoint in the model store (``models/``) is used where the cache lacks it.

    python experiments/sense_random80.py mnist               # 2,000 steps: the sense chapter's curve
    python experiments/sense_random80.py car --steps 16000   # the car chapter's (finished: in models/)
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from aann import store
from aann.experiments import parser, write_experiment
from aann.neighbours import NeighbourEvaluator
from aann.runtime import default_device
from aann.profiles import budgets
from aann.sense import checkpoint_path, random_sparse_ternary, sense

LAYERS = {"mnist": ("1.0", "2.0", "fc"), "car": ("1.0", "2.0", "fc1.0", "fc")}


def splits(task: str, quick: bool, device):
    """(validation, test) of the task: MNIST's, or the car chapter's demonstrations (the quick
    profile's tracks with ``--quick``, else the full profile's)."""
    if task == "mnist":
        from aann.data import load_splits

        d = load_splits("mnist", device=device, download=True)
        return d["val"], d["test"].subset(300, seed=0) if quick else d["test"]
    from aann.demonstrations import load_demonstrations

    b = budgets("car_racing", "quick" if quick else "full")
    data, _ = load_demonstrations({k: b.tracks[k] for k in ("val", "test")}, b.demo, device=device, progress=False)
    return data["val"], data["test"]


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("task", choices=sorted(LAYERS))
    p.add_argument("--fitness", choices=["cross_entropy", "accuracy"], default="cross_entropy")
    p.add_argument("--steps", type=int, default=2_000)
    p.add_argument("--extends", type=int, default=None, metavar="STEPS",
                   help="continue the finished run of this many steps (its checkpoint) instead of starting afresh")
    p.add_argument("--neighbours", type=int, default=None, help="per step (default: the chapters')")
    p.add_argument("--select", type=int, default=2_000, help="validation images (frames) that select")
    p.add_argument("--every", type=int, default=100, help="steps between test evaluations")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.select, args.every, args.extends = 6, 200, 3, 3
    device = default_device() if args.device is None else args.device
    val, test = splits(args.task, args.quick, device)
    select = val.subset(args.select, seed=args.seed)
    start = random_sparse_ternary("mnist_net" if args.task == "mnist" else "car_net", 80, seed=args.seed).to(device)
    # the chapters' search from the random 80 % net (schedule, blocks, neighbours), run longer
    base = budgets("sense", "full").random80 if args.task == "mnist" else budgets("car_racing", "full").sense80_all
    cfg = replace(base, steps=args.steps, neighbours=args.neighbours or base.neighbours, fitness=args.fitness,
                  seed=args.seed)
    name = f"{args.task}-random80-{args.fitness}"
    path = checkpoint_path(name, start, select, cfg)
    shorter = None
    if args.extends is not None:
        shorter = checkpoint_path(name, start, select, replace(cfg, steps=args.extends))
        if not shorter.exists() and store.find(shorter.name) is None:  # the shorter run first, then this one
            sense(start, select, replace(cfg, steps=args.extends), checkpoint=shorter, progress=not args.quick)
    print(f"{args.task}: {cfg.steps} steps of {cfg.neighbours} neighbours, selection on {len(select):,}, "
          f"test on {len(test):,} (checkpoint {path.name})", flush=True)
    ran = not path.exists()
    started = time.time()
    res = sense(start, select, cfg, checkpoint=path, extends=shorter, progress=not args.quick)
    h = res.history
    members = np.cumsum(h["moved"])  # the family member the search held after each step
    moved_in = np.array([layer for layer, _, _ in res.path])
    metrics = {"steps": cfg.steps, "neighbours": cfg.neighbours, "n_select": len(select), "n_test": len(test)}
    if ran:
        metrics["search_s"] = time.time() - started
    for s in sorted({0, *range(args.every, cfg.steps + 1, args.every), cfg.steps}):
        i = int(members[s - 1]) if s else 0
        metrics.update({f"curve/{s}/val_acc": h["val_acc"][s - 1] if s else res.member_val[0],
                        f"curve/{s}/test_acc": NeighbourEvaluator(res.member(i), test).base_accuracy,
                        f"curve/{s}/evaluations": h["evaluations"][s - 1] if s else 0,
                        **{f"curve/{s}/moves/{layer}": int((moved_in[:i] == layer).sum()) for layer in LAYERS[args.task]}})
        print(f"step {s:6d}: validation {metrics[f'curve/{s}/val_acc']:.4f}, test {metrics[f'curve/{s}/test_acc']:.4f}",
              flush=True)
    metrics.update({"final/val_acc": h["val_acc"][-1], "final/test_acc": metrics[f"curve/{cfg.steps}/test_acc"],
                    "final/evaluations": h["evaluations"][-1]})
    print(f"wrote {write_experiment(f'sense_random80_{args.task}_{args.fitness}', metrics, args, device).name}")


if __name__ == "__main__":
    main()
