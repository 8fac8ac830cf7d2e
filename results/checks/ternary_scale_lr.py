# Rerun: .venv/bin/python results/checks/ternary_scale_lr.py  (CPU, about 15 minutes; validation only)
"""Validation-only: does p-SIREN's step 4 lose accuracy because Adam moves the layer scale alpha
too far? alpha is about 0.05 and Adam moves every parameter by up to lr = 1e-3 per step, so alpha
can change by its own size in a hundred steps. Forked from one step-3 network (full budgets, 90 %,
MNIST, all training images): step 4 as in the book, with alpha's learning rate cut 100x, and with
alpha frozen at its initial value (the mean |w| of the kept weights)."""
import copy
import time

import torch

from aann.data import load_splits
from aann.psiren import LEVELS_FIG2, PSirenConfig, _epoch_seed, p_siren, reference_budget
from aann.ternary import sparse_layers, ternarize
from aann.training import accuracy, train_epoch

if __name__ == "__main__":
    d = load_splits("mnist")
    full = reference_budget("full")["config"]
    t = time.time()
    # n4 = 0: steps 1-3 only (ternarized, not trained in ternary mode); the latent weights are kept
    net = p_siren(d, [90], seed=0, config=PSirenConfig(**{**full.__dict__, "n4": 0}), rate_levels=LEVELS_FIG2,
                  progress=False)[90.0].model
    for layer in sparse_layers(net).values():
        layer.is_ternary.fill_(False)
    print(f"steps 1-3 in {time.time() - t:.0f} s; validation after step 3 (dense) {accuracy(net, d['val']):.4f}",
          flush=True)

    def step4(label, scale_lr_factor, n4=full.n4):
        m = copy.deepcopy(net)
        ternarize(m)
        scales = [p for n, p in m.named_parameters() if n.endswith("scale")]
        others = [p for n, p in m.named_parameters() if not n.endswith("scale")]
        groups = [{"params": others}] + ([{"params": scales, "lr": full.lr_ternary * scale_lr_factor}]
                                         if scale_lr_factor else [])
        if not scale_lr_factor:
            for p in scales:
                p.requires_grad_(False)
        opt = torch.optim.Adam(groups, lr=full.lr_ternary)
        steps = n4 * -(-len(d["train"]) // full.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        v0, vals = accuracy(m, d["val"]), []
        for e in range(n4):
            train_epoch(m, d["train"], opt, full.batch_size, _epoch_seed(0, "step4", 90.0, e), sched)
            vals.append(round(accuracy(m, d["val"]), 4))
        alphas = [round(float(p.detach().mean()), 4) for p in scales]
        print(f"{label}: right after ternarizing {v0:.4f}; per epoch {vals}; alpha per layer {alphas}", flush=True)

    step4("A as the book (alpha lr 1e-3)", 1.0)
    step4("B alpha lr 1e-5", 0.01)
    step4("C alpha frozen", 0.0)
