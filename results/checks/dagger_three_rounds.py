# DAgger from the quick profile's 90 % car net, outside the chapter: python results/checks/dagger_three_rounds.py 3 4 3
# (3 rounds x 4 tracks x 400 frames, 3 epochs; 2 validation tracks; then the last round drives the 4 evaluation tracks).
# CPU, code of 559973a (run before the commit, same dagger.py). Output: results/checks/dagger_three_rounds.log
import time, sys, numpy as np, torch
from aann.demonstrations import DemoConfig, load_demonstrations, split_seeds
from aann.psiren import PSirenConfig, p_siren
from aann.dagger import DaggerConfig, dagger
from aann.car_racing import NetDriver, evaluate_driver
t0=time.time()
def main():
    data, info = load_demonstrations({"train": 8, "val": 2, "test": 2}, DemoConfig(steps=400, noise=0.1), workers=2, progress=False)
    runs = p_siren({"train": data["train"], "val": data["val"]}, [0, 50, 90, 95, 99], seed=0, config=PSirenConfig(model="car_net", n1=3, n2=6, n3=1, n4=3), progress=False)
    net90 = runs[90.0].model
    print("loaded", time.time()-t0, flush=True)
    rounds, tpr, epochs = (int(a) for a in sys.argv[1:4])
    cfg = DaggerConfig(rounds=rounds, tracks_per_round=tpr, steps=400, epochs=epochs)
    res = dagger(net90, data["train"], data["val"], split_seeds("val", 2), cfg, workers=2, progress=False)
    print(res.history, "best", res.best_round, time.time()-t0, flush=True)
    eps = evaluate_driver(NetDriver(res.networks[-1]), split_seeds("drive", 4), workers=2, progress=False)
    print("last round drive", [round(e.total_return,1) for e in eps], np.mean([e.total_return for e in eps]), time.time()-t0)
    
if __name__ == "__main__":
    main()
