# SENSE from a random 80 %-sparse MNIST net, fc layer only, 10,000 steps of 100 neighbours,
# selection on 2,000 validation images, test on 2,000 test images (CPU, commit after e79763d).
# Output: results/checks/sense_fc_long.log (step, validation acc, test acc, neighbours evaluated).
import time
from aann.data import load_splits
from aann.sense import SenseConfig, random_sparse_ternary, sense
d = load_splits("mnist")
val, test = d["val"].subset(2000, seed=0), d["test"].subset(2000, seed=0)
net = random_sparse_ternary("mnist_net", 80, seed=0)
t = time.time()
res = sense(net, val, SenseConfig(schedule="fc", steps=10000, block=10**6, neighbours=100, seed=0), report=test, progress=False)
h = res.history
for s in [999, 2999, 4999, 7499, 9999]:
    print(s + 1, h["val_acc"][s], h["test_acc"][s], h["evaluations"][s])
print("moves", len(res.path), f"{time.time()-t:.0f}s")
