# Rerun: .venv/bin/python results/checks/msp_saturation_net1_full.py  (CPU, about 25 minutes; the
# trained Net1 is cached, so a second run takes seconds)
"""The max-softmax baseline on a full-budget Net1, computed both ways.

The self-introspection chapter's GPU run (results/full/self_introspection.json, before
aann.detection.msp_error_score existed) scored the baseline as -max softmax in float32 and got
AUROC 0.687 and FPR 1.0 at 95 % TPR on MNIST: Net1's logits are so confident that max softmax
rounds to exactly 1.0 for many test images, right or wrong, and those tie. This trains the same
Net1 (the chapter's full-profile config, every training image, 60 epochs) on this CPU and reports
the baseline computed as the chapter computed it then and as it does now."""
import time

import numpy as np
import torch
from net1_full_budget import train_net1  # same folder: the full-budget Net1, trained or from the cache

from aann.detection import detection_report, msp_error_score
from aann.training import logits

if __name__ == "__main__":
    t = time.time()
    data, model, meta = train_net1()
    out = logits(model, data["test"])
    wrong = (out.argmax(1) != data["test"].y).numpy()
    msp32 = torch.softmax(out.float(), 1).max(1).values.numpy()
    print(f"validation {meta['val_acc']:.4f}  test {1 - wrong.mean():.4f}  ({time.time() - t:.0f} s)")
    print(f"max softmax exactly 1.0 in float32: {np.mean(msp32 == 1.0):.1%} of the test images "
          f"({np.mean(msp32[wrong] == 1.0):.1%} of the {wrong.sum()} errors)")
    for name, score in (("-max softmax, float32 (the chapter before)", -msp32),
                        ("msp_error_score (the chapter now)", msp_error_score(out.numpy()))):
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in detection_report(score, wrong).items()))
