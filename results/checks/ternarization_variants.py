# Rerun: .venv/bin/python results/checks/ternarization_variants.py  (CPU, about 8 minutes; validation accuracies only)
"""Validation-only: ternarization variants forked from one step-3 network (full budgets, 90 %)."""
import copy, time, torch
from aann.data import load_splits
from aann.models import get_model
from aann.psiren import p_siren, reference_budget, PSirenConfig
from aann.ternary import ternarize, sparse_layers
from aann.training import train_epoch, accuracy
d = load_splits("mnist")
cfg = reference_budget("full")["config"]
base = PSirenConfig(**{**cfg.__dict__, "n4": 0})
t = time.time()
net = p_siren(d, [90], seed=0, config=base, use_cache=False, rate_levels=[95])[90.0].model
print(f"steps 1-3 done in {time.time()-t:.0f}s; val after step 3 (dense mode):", flush=True)
for l in sparse_layers(net).values(): l.is_ternary.fill_(False)
print("  ", accuracy(net, d["val"]), flush=True)
state = {k: v for k, v in net.state_dict().items()}
def variant(label, scale, lr, n4):
    m = get_model("mnist_net", scale=scale)
    m.load_state_dict({k: v for k, v in state.items() if not k.endswith("scale")}, strict=False)
    ternarize(m)
    v0 = accuracy(m, d["val"])
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    steps = n4 * -(-len(d["train"]) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    vals = []
    for e in range(n4):
        train_epoch(m, d["train"], opt, 128, 1000 + e, sched)
        vals.append(round(accuracy(m, d["val"]), 4))
    print(f"{label}: right after ternarizing {v0:.4f}; per epoch {vals}", flush=True)
variant("A layer-scale lr1e-3 n4=5", "layer", 1e-3, 5)
variant("B channel-scale lr1e-3 n4=5", "channel", 1e-3, 5)
variant("C layer-scale lr3e-4 n4=5", "layer", 3e-4, 5)
variant("D channel-scale lr1e-3 n4=10", "channel", 1e-3, 10)
