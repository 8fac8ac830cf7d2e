# Rerun: .venv/bin/python results/checks/step4_variants.py [variant ...]  (CPU; validation accuracies only)
"""Validation-only: p-SIREN's step 4 (ternary training) in variants, each forked from the same
step-3 network (full budgets, MNIST, 90 % sparse, seed 0; steps 1-3 from the model cache when
there). Continues ``ternarization_variants.py``, whose finding was that ternarizing costs about a
point that step 4 wins back only in part. Here: the step-4 learning rate (Adam moves a latent
weight by about the learning rate per step, so it sets how often signs flip), and distillation
from the step-3 network (the ternary network learns the dense one's soft outputs,
Hinton et al. 2015: loss = (1 - a) CE + a T^2 KL(teacher_T || student_T)). No test image is loaded.

Variants: name = scale:lr:n4[:kd_a:kd_T], e.g. layer:0.001:5 (the book's step 4) or layer:0.001:5:0.9:4.
"""
import sys
import time

import torch
import torch.nn.functional as F

from aann.data import load_splits
from aann.models import get_model
from aann.psiren import PSirenConfig, fine_tune, p_siren, reference_budget
from aann.ternary import sparse_layers, ternarize
from aann.training import accuracy, logits

DEFAULT = ["layer:0.001:5", "layer:0.003:5", "layer:0.01:5", "layer:0.001:5:0.9:4"]

if __name__ == "__main__":
    variants = sys.argv[1:] or DEFAULT
    d = load_splits("mnist")
    cfg = reference_budget("full")["config"]
    t = time.time()
    net = p_siren(d, [90], seed=0, config=PSirenConfig(**{**cfg.__dict__, "n4": 0}), rate_levels=[95])[90.0].model
    print(f"steps 1-3: {time.time() - t:.0f} s (0 when cached)", flush=True)
    for layer in sparse_layers(net).values():
        layer.is_ternary.fill_(False)  # n4 = 0 still ternarized: back to the step-3 network
    print(f"step-3 network, validation {accuracy(net, d['val']):.4f}", flush=True)
    state = net.state_dict()
    teacher_logits = None
    for spec in variants:
        scale, lr, n4, *kd = spec.split(":")
        lr, n4 = float(lr), int(n4)
        kd_a, kd_t = (float(kd[0]), float(kd[1])) if kd else (0.0, 1.0)
        m = get_model("mnist_net", scale=scale)
        m.load_state_dict({k: v for k, v in state.items() if not k.endswith("scale")}, strict=False)
        ternarize(m)
        v0 = accuracy(m, d["val"])
        loss_fn = F.cross_entropy
        if kd_a:
            if teacher_logits is None:
                teacher_logits = logits(net, d["train"])
            # train_epoch passes (logits, labels); the labels' batch rows are found by matching
            # indices: carry the row index in the label tensor instead (y + 10 * row)
            soft = F.softmax(teacher_logits / kd_t, dim=1)

            def loss_fn(z, yr, a=kd_a, T=kd_t):
                y, row = yr % 10, yr // 10
                kl = F.kl_div(F.log_softmax(z / T, dim=1), soft[row], reduction="batchmean")
                return (1 - a) * F.cross_entropy(z, y) + a * T * T * kl
        train = d["train"]
        if kd_a:
            train = type(train)(train.x, train.y + 10 * torch.arange(len(train)))
        vals, t = [], time.time()
        # the book's step 4 (psiren.fine_tune, the same epoch seeds), with this variant's settings
        fine_tune(m, train, n4, lr, 128, cosine=True, seed=0, tags=("step4", 90.0), loss_fn=loss_fn,
                  after_epoch=lambda e, model: vals.append(round(accuracy(model, d["val"]), 4)))
        print(f"{spec}: right after ternarizing {v0:.4f}; per epoch {vals} ({time.time() - t:.0f} s)", flush=True)
