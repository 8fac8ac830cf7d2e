"""The track expert on 10 unseen tracks (gymnasium seeds 40,000-40,009), continuous and 3-class:
python results/checks/car_expert.py > results/checks/car_expert.json"""
import json

import numpy as np

from aann.car_racing import ExpertDriver, evaluate_driver
from aann.demonstrations import split_seeds

if __name__ == "__main__":
    seeds = split_seeds("drive", 10)
    out = {}
    for name, classes in [("continuous", False), ("three_classes", True)]:
        eps = evaluate_driver(ExpertDriver(classes=classes), seeds, workers=2, progress=False)
        out[name] = {"mean_return": float(np.mean([e.total_return for e in eps])),
                     "returns": [round(e.total_return, 2) for e in eps], "steps": [e.steps for e in eps],
                     "tiles_visited": [round(e.tiles_visited, 4) for e in eps]}
    print(json.dumps({"seeds": seeds, **out}, indent=1))
