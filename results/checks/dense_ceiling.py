# Rerun: .venv/bin/python results/checks/dense_ceiling.py  (CPU, about 3 minutes; validation only)
"""How good can p-SIREN's step 1 get in 8 epochs? The dense MNIST net, three learning-rate plans."""
import torch

from aann.data import load_splits
from aann.models import get_model
from aann.runtime import seed_everything
from aann.training import accuracy, train_epoch

d = load_splits("mnist")
for label, lr, cosine in [("constant 1e-3 (p-SIREN step 1 now)", 1e-3, False),
                          ("cosine from 1e-3", 1e-3, True), ("cosine from 3e-3", 3e-3, True)]:
    seed_everything(0)
    net = get_model("mnist_net")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = 8 * -(-len(d["train"]) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    vals = []
    for e in range(8):
        train_epoch(net, d["train"], opt, 128, e, sched)
        vals.append(round(accuracy(net, d["val"]), 4))
    print(f"{label}: validation accuracy per epoch {vals}", flush=True)
