"""SENSE from a random 80 %-sparse ternary network, tested along the way: a long search's curve.

The start is the chapters' own (``random_sparse_ternary(model, 80, seed)``: the sense chapter's MNIST
net, for MNIST or Fashion-MNIST, or the car chapter's car net); the schedule is the random-layer
one of the paper's Fig. 8a over every layer (blocks of up to 3 steps), ``--neighbours`` neighbours
a step, ``--fitness`` the cross-entropy (beyond the paper) or the accuracy (the paper's). The
fitness is measured on ``--select`` validation images (frames), as in the chapters; with
``--fit-on train`` on as many training images instead, and the validation split (all of it) then
only chooses the network the search held at the best curve point. ``--swaps-per-step`` > 1 makes each step a composite move
(``aann.sense_climber``); ``--schedule adaptive`` rests the layers that stop improving
(``aann.sense``). The test split (all 10,000 test images, or every frame of the full
profile's test tracks) is evaluated every ``--every`` steps on the network the search held, and
never selects. The search is checkpointed in the model cache: a stopped run resumes, and
``--steps`` larger than a finished run's continues it (``sense(..., extends=...)``). A finished
checkpoint in the model store (``models/``) is used where the cache lacks it.

    python experiments/sense_random80.py mnist               # 2,000 steps: the sense chapter's curve
    python experiments/sense_random80.py car --steps 16000   # the car chapter's (finished: in models/)
    python experiments/sense_random80.py mnist --fit-on train --select 5000 --swaps-per-step 8
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

LAYERS = {"mnist": ("1.0", "2.0", "fc"), "fashion_mnist": ("1.0", "2.0", "fc"), "car": ("1.0", "2.0", "fc1.0", "fc")}


def splits(task: str, quick: bool, device, train: bool) -> dict:
    """Validation and test splits of the task, and the training split with ``train``: MNIST's, or
    the car chapter's demonstrations (the quick profile's tracks with ``--quick``, else the full
    profile's)."""
    if task != "car":
        from aann.data import load_splits

        d = load_splits(task, device=device, download=True)
        return d | {"test": d["test"].subset(300, seed=0) if quick else d["test"]}
    from aann.demonstrations import load_demonstrations

    b = budgets("car_racing", "quick" if quick else "full")
    tracks = {k: n for k, n in b.tracks.items() if train or k != "train"}
    data, _ = load_demonstrations(tracks, b.demo, device=device, progress=False)
    return data


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("task", choices=sorted(LAYERS))
    p.add_argument("--fitness", choices=["cross_entropy", "accuracy"], default="cross_entropy")
    p.add_argument("--steps", type=int, default=2_000)
    p.add_argument("--extends", type=int, default=None, metavar="STEPS",
                   help="continue the finished run of this many steps (its checkpoint) instead of starting afresh")
    p.add_argument("--neighbours", type=int, default=None, help="per step (default: the chapters')")
    p.add_argument("--select", type=int, default=2_000, help="images (frames) the fitness is measured on")
    p.add_argument("--fit-on", choices=["val", "train"], default="val",
                   help="the split the fitness images come from (train: validation only chooses the network)")
    p.add_argument("--swaps-per-step", type=int, default=1, help="> 1: composite moves of up to this many swaps")
    p.add_argument("--schedule", choices=["random", "adaptive"], default="random",
                   help="the layer of each block: the paper's random pick, or among the layers not resting")
    p.add_argument("--every", type=int, default=100, help="steps between test evaluations")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.select, args.every, args.extends = 6, 200, 3, 3
    device = default_device() if args.device is None else args.device
    data = splits(args.task, args.quick, device, train=args.fit_on == "train")
    val, test = data["val"], data["test"]
    select = data[args.fit_on].subset(args.select, seed=args.seed)
    held_out = args.fit_on == "train"  # the validation split chooses, the fitness images do not
    start = random_sparse_ternary("car_net" if args.task == "car" else "mnist_net", 80, seed=args.seed).to(device)
    # the chapters' search from the random 80 % net (schedule, blocks, neighbours), run longer
    base = budgets("car_racing", "full").sense80_all if args.task == "car" else budgets("sense", "full").random80
    cfg = replace(base, steps=args.steps, neighbours=args.neighbours or base.neighbours, fitness=args.fitness,
                  seed=args.seed, swaps_per_step=args.swaps_per_step, schedule=args.schedule)
    variant = ((f"_swaps{cfg.swaps_per_step}" if cfg.swaps_per_step > 1 else "") + ("_train" if held_out else "")
               + ("_adaptive" if cfg.schedule == "adaptive" else ""))
    name = f"{args.task}-random80-{args.fitness}{variant.replace('_', '-')}"
    path = checkpoint_path(name, start, select, cfg)
    shorter = None
    if args.extends is not None:
        shorter = checkpoint_path(name, start, select, replace(cfg, steps=args.extends))
        if not shorter.exists() and store.find(shorter.name) is None:  # the shorter run first, then this one
            sense(start, select, replace(cfg, steps=args.extends), checkpoint=shorter, progress=not args.quick)
    print(f"{args.task}: {cfg.steps} steps of {cfg.neighbours} neighbours, fitness on {len(select):,} {args.fit_on}, "
          f"test on {len(test):,} (checkpoint {path.name})", flush=True)
    ran = not path.exists()
    started = time.time()
    res = sense(start, select, cfg, checkpoint=path, extends=shorter, progress=not args.quick)
    h = res.history
    members = np.cumsum(h["swaps"])  # the family member the search held after each step
    moved_in = np.array([layer for layer, _, _ in res.path])
    stepped_in = np.array(h["layer"])
    metrics = {"steps": cfg.steps, "neighbours": cfg.neighbours, "n_select": len(select), "n_test": len(test)}
    if ran:  # the time of this call: the whole search, or with --extends the steps it added
        metrics["search_s" if shorter is None else "extension_s"] = time.time() - started
    layers = LAYERS[args.task]
    for s in sorted({0, *range(args.every, cfg.steps + 1, args.every), cfg.steps}):
        i = int(members[s - 1]) if s else 0
        net = res.member(i)
        fit_acc = h["val_acc"][s - 1] if s else res.member_val[0]  # on the fitness images
        at = f"curve/{s}"
        if held_out:
            metrics[f"{at}/fit_acc"] = fit_acc
        metrics.update({f"{at}/val_acc": NeighbourEvaluator(net, val).base_accuracy if held_out else fit_acc,
                        f"{at}/test_acc": NeighbourEvaluator(net, test).base_accuracy,
                        f"{at}/evaluations": h["evaluations"][s - 1] if s else 0,
                        **{f"{at}/moves/{layer}": int((moved_in[:i] == layer).sum()) for layer in layers},
                        **{f"{at}/steps/{layer}": int((stepped_in[:s] == layer).sum()) for layer in layers}})
        print(f"step {s:6d}: validation {metrics[f'{at}/val_acc']:.4f}, test {metrics[f'{at}/test_acc']:.4f}",
              flush=True)
    metrics.update({"final/val_acc": metrics[f"curve/{cfg.steps}/val_acc"],
                    "final/test_acc": metrics[f"curve/{cfg.steps}/test_acc"], "final/evaluations": h["evaluations"][-1]})
    if held_out:  # the network the validation split chooses among the curve's points
        points = sorted({int(k.split("/")[1]) for k in metrics if k.startswith("curve/")})
        best = max(points, key=lambda s: (metrics[f"curve/{s}/val_acc"], -s))
        metrics.update({"selected/step": best, "selected/val_acc": metrics[f"curve/{best}/val_acc"],
                        "selected/test_acc": metrics[f"curve/{best}/test_acc"]})
    out = write_experiment(f"sense_random80_{args.task}_{args.fitness}{variant}", metrics, args, device)
    print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
