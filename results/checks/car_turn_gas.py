# Rerun: .venv/bin/python results/checks/car_turn_gas.py  (CPU, about 3 minutes a variant)
"""Could a different class -> action mapping lift the 3-class ceiling? The 3-class expert on the
tracks its constants were tuned on (gymnasium seeds 0-5, never an evaluation track), with the two
turning classes executing some gas g instead of coasting (g = 0 was the book's mapping; run on labels
version 1, the thresholded steering of the time). Run
interrupted after g = 0.2: the trend was already clear."""
import numpy as np

from aann import car_racing as cr

if __name__ == "__main__":
    for g in [0.0, 0.1, 0.2, 0.3, 0.5]:
        cr.CLASS_ACTIONS[[0, 2], 1] = g  # in place, so that every driver sees it
        eps = cr.evaluate_driver(cr.ExpertDriver(classes=True), list(range(6)), workers=1, progress=False)
        print(g, round(float(np.mean([e.total_return for e in eps])), 1), [round(e.total_return) for e in eps],
              [round(e.tiles_visited, 2) for e in eps], [e.steps for e in eps], flush=True)
