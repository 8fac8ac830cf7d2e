# Rerun: .venv/bin/python results/checks/sense_loss_temperature.py  (CPU, about 10 minutes)
"""How the cross-entropy fitness's temperature was chosen: ``SenseConfig.loss_temperature`` (T in units
of the output layer's scale alpha) at 0.25, 0.5, 1 and 1 / alpha (T = 1, plain logits), 200 steps
of the random-layer schedule from the random 80 %-sparse MNIST net (seed 0), 30 neighbours a step,
selection on 2,000 validation images, and the *validation* accuracy they reach: the choice uses
nothing else (no test images are loaded). Each line: the setting, T, validation accuracy after 100
and 200 steps, seconds."""
import time

from aann.data import load_splits
from aann.sense import SenseConfig, loss_temperature, random_sparse_ternary, sense

if __name__ == "__main__":
    seed = 0
    select = load_splits("mnist", download=True)["val"].subset(2_000, seed=seed)
    start = random_sparse_ternary("mnist_net", 80, seed=seed)
    alpha = float(start.fc.scale.detach().abs().mean())
    for tau in (0.25, 0.5, 1.0, 1.0 / alpha):
        cfg = SenseConfig(schedule="random", steps=200, block=3, neighbours=30, fitness="cross_entropy",
                          loss_temperature=tau, seed=seed)
        t = time.time()
        res = sense(start, select, cfg, progress=False)
        print(f"loss_temperature {tau:7.3f} (T = {loss_temperature(cfg, start):.4f}): validation "
              f"{res.history['val_acc'][99]:.4f} after 100 steps, {res.history['val_acc'][-1]:.4f} after 200  "
              f"{time.time() - t:.0f} s", flush=True)
