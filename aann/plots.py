"""Figures shared by chapters (the chapters call these rather than each drawing its own copy)."""

from __future__ import annotations

import numpy as np


def neighbour_histograms(accs: dict, base_acc: float, title: str = "layer {layer}", bins: int = 30):
    """One histogram per layer of the first neighbours' accuracies (percent), with the original's
    accuracy as a red line (Figs. 3 and 9 of Talukder et al.)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    layers = list(accs)
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        df = pd.DataFrame({"test_acc": 100 * np.asarray(accs[layer], dtype=float)})
        sns.histplot(df, x="test_acc", bins=bins, ax=ax, color="tab:blue")
        ax.axvline(100 * base_acc, color="red", lw=2, label="original")
        ax.set(title=title.format(layer=layer), xlabel="test accuracy (%)")
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


def embedding_3d(embeddings: dict, method: str = "t-SNE", title: str = "{method}, layer {layer}", views=None):
    """3-D scatter per layer: a 2-D embedding of the neighbours' weight vectors, height and colour the
    test accuracy (percent), the original (row 0) as a blue dot (Figs. 4 and 10). ``embeddings[layer]``
    holds ``method`` (N + 1 x 2) and ``"acc"`` (N + 1). ``views`` lists (elevation, azimuth) pairs:
    one panel per layer and view (Fig. 10 shows a side and a top view)."""
    import matplotlib.pyplot as plt

    views = views or [(None, None)]
    panels = [(layer, v) for layer in embeddings for v in views]
    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = plt.figure(figsize=(4.4 * cols, 4.2 * rows))
    for i, (layer, (elev, azim)) in enumerate(panels):
        e = embeddings[layer]
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        ax.scatter(e[method][1:, 0], e[method][1:, 1], e["acc"][1:], c=e["acc"][1:], cmap="viridis", s=6)
        ax.scatter(*e[method][0], e["acc"][0], color="blue", s=80, depthshade=False)
        ax.set(title=title.format(method=method, layer=layer), zlabel="test accuracy (%)")
        if elev is not None or azim is not None:
            ax.view_init(elev=elev, azim=azim)
    fig.tight_layout()
    return fig


TREATMENT_LABELS = {"synapse_knockout": "synapse knockout: fraction of weights removed",
                    "node_knockout": "node knockout: fraction of units removed",
                    "gaussian": "Gaussian perturbation: magnitude m (x sigma of the layer)"}


def perturbation_curves(table, treatment: str, metrics=("top1",), title: str = "", ax_width: float = 5.5):
    """Accuracy against the perturbation's amount, one line per layer (input side first), mean
    +- sd over the independent perturbations (Figs. 1-5 of Cheney et al.)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = table[table.treatment == treatment].sort_values(["depth", "amount"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(ax_width * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.lineplot(sub, x="amount", y=metric, hue="layer", errorbar="sd", marker="o", markersize=4,
                     palette="viridis", ax=ax, err_style="bars")
        ax.set(xlabel=TREATMENT_LABELS[treatment], ylabel=f"{metric.replace('top', 'top-')} accuracy", ylim=(0, 1))
        ax.legend(fontsize=7, ncol=2, title=None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
