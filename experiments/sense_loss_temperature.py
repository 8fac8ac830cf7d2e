"""How the cross-entropy fitness's temperature was chosen, on validation images only.

``SenseConfig.loss_temperature`` (T in units of the output layer's scale alpha) at 0.25, 0.5 and 1,
and at 1 / alpha (T = 1: plain logits); for each, the random-layer search of the sense chapter from
its random 80 %-sparse MNIST net, 30 neighbours a step, selection on 2,000 validation images, and
the validation accuracy after 100 and 200 steps. No test image is loaded: the choice uses nothing
else. About 18 minutes on a 2-core CPU.

    python experiments/sense_loss_temperature.py
"""

from __future__ import annotations

from dataclasses import replace

from aann.data import load_splits
from aann.experiments import parser, write_experiment
from aann.runtime import default_device
from aann.profiles import budgets
from aann.sense import loss_temperature, random_sparse_ternary, sense


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--select", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.select = 4, 100
    device = default_device() if args.device is None else args.device
    select = load_splits("mnist", device=device, download=True)["val"].subset(args.select, seed=args.seed)
    start = random_sparse_ternary("mnist_net", 80, seed=args.seed).to(device)
    alpha = float(start.fc.scale.detach().abs().mean())
    metrics = {"steps": args.steps, "n_select": len(select), "alpha": alpha}
    for name, tau in (("0.25", 0.25), ("0.5", 0.5), ("1", 1.0), ("T=1", 1.0 / alpha)):
        cfg = replace(budgets("sense", "full").random80, steps=args.steps, fitness="cross_entropy",
                      loss_temperature=tau, seed=args.seed)  # the sense chapter's search from random 80 %
        res = sense(start, select, cfg, progress=not args.quick)
        metrics |= {f"{name}/loss_temperature": tau, f"{name}/T": loss_temperature(cfg, start),
                    f"{name}/val_acc_half": res.history["val_acc"][args.steps // 2 - 1],
                    f"{name}/val_acc": res.history["val_acc"][-1]}
        print(f"loss_temperature {tau:.3f} (T = {metrics[f'{name}/T']:.4f}): validation {metrics[f'{name}/val_acc']:.4f}",
              flush=True)
    print(f"wrote {write_experiment('sense_loss_temperature', metrics, args, device).name}")


if __name__ == "__main__":
    main()
