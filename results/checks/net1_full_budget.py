# Rerun: .venv/bin/python results/checks/net1_full_budget.py  (CPU, a few minutes)
"""Pardo et al.'s Net1 (784 -> 12 x 200 ELU -> 10 sigmoid outputs, squared error, triangular cyclic
learning rate) with the self-introspection chapter's full-profile budget (every MNIST training
image, 60 epochs = 30 cycles), trained on this CPU. The issue's target: >= 97 % test accuracy
(paper 96.57 %). Validation accuracy per epoch; the test accuracy once, at the end."""
import time

from aann.data import load_splits
from aann.training import TrainConfig, accuracy, train_classifier

# the chapter's full-profile net1
CONFIG = TrainConfig(model="elu_mlp", epochs=60, cycle_epochs=2, lr=1e-3, weight_decay=0.0,
                     loss="mse_sigmoid", schedule="triangular")


def train_net1():
    """Net1 with the full budget, seed 0 (from the model cache after the first run): (data, model, meta)."""
    data = load_splits("mnist", download=True)
    model, meta = train_classifier(data, CONFIG, seed=0, progress=False)
    return data, model, meta


if __name__ == "__main__":
    t = time.time()
    data, model, meta = train_net1()
    print("validation accuracy per epoch:", [round(v, 4) for v in meta["history"]["val_acc"]])
    print(f"validation {meta['val_acc']:.4f}  test {accuracy(model, data['test']):.4f}  ({time.time() - t:.0f} s)")
