"""Descriptive statistics of a network's weights, layer by layer (the paper's Table 1)."""

from __future__ import annotations

import numpy as np
from torch import nn

from .faults import layer_weights, weight_layers

__all__ = ["weight_statistics"]



def weight_statistics(model: nn.Module):
    """One row per layer and parameter (``<layer>_W``, ``<layer>_b``): size, mean, median, sigma,
    min, max, kurtosis (excess, Fisher's), skew, of the weights the layer computes with."""
    import pandas as pd
    from scipy import stats

    rows = []
    for name, layer in weight_layers(model).items():
        w, b = layer_weights(layer)
        for suffix, t in (("W", w), ("b", b)):
            if t is None:
                continue
            v = t.detach().double().cpu().numpy().ravel()
            spread = v.size > 3 and v.std() > 0  # kurtosis and skew are undefined for constant values
            rows.append({"layer": f"{name}_{suffix}", "size": v.size, "mean": v.mean(), "median": np.median(v),
                         "sigma": v.std(), "min": v.min(), "max": v.max(),
                         "kurtosis": stats.kurtosis(v) if spread else np.nan,
                         "skew": stats.skew(v) if spread else np.nan})
    return pd.DataFrame(rows).set_index("layer")
