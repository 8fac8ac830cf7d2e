"""Figures shared by chapters (the chapters call these rather than each drawing its own copy)."""

from __future__ import annotations

import numpy as np

__all__ = ["neighbour_histograms", "embedding_3d", "TREATMENT_LABELS", "perturbation_curves",
           "shared_legend", "class_palette", "estimated_error_image", "error_map", "latent_scatter", "latent_trajectories",
           "activation_space_row", "error_violins", "check_curve_plot", "search_curves", "neighbourhood_plot",
           "layer_steps_plot", "LAYER_COLOURS"]


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
        ax.set_title(title.format(method=method, layer=layer))
        # the z label sits clear of the tick labels, and the box shrinks a little so nothing is clipped
        ax.set_zlabel("test accuracy (%)", labelpad=10)
        ax.tick_params(axis="both", labelsize=8, pad=1)
        ax.set_box_aspect(None, zoom=0.85)
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
    fig.suptitle(title)
    shared_legend(fig, axes[0])
    return fig


def shared_legend(fig, axes, max_columns: int = 6):
    """One legend for panels that share their lines, below them (in rows of at most ``max_columns``
    entries) instead of one per panel: a deep network's 16 layers no longer cover the curves."""
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02),
                      ncol=min(max_columns, len(labels)), fontsize=8, frameon=False)


# --- self-introspection: activation-space maps (Pardo et al., Figs. 2, 5, 6) ---


def class_palette(num_classes: int = 10) -> np.ndarray:
    """One RGB colour per class (matplotlib's tab10), num_classes x 3."""
    import matplotlib.pyplot as plt

    return np.asarray(plt.get_cmap("tab10").colors[:num_classes])


def estimated_error_image(estimator, limit: float = 4.0, points: int = 200):
    """The estimator's log10 e_hat on a points x points grid over [-limit, limit]^2, oriented for
    ``imshow(..., origin="lower", extent=(-limit, limit, -limit, limit))`` (z1 across, z2 up)."""
    import torch

    axis = torch.linspace(-limit, limit, points)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
    device = next(estimator.parameters()).device
    with torch.inference_mode():
        img = estimator.eval()(torch.stack([z1.flatten(), z2.flatten()], 1).to(device))
    return img.view(points, points).cpu().numpy()


def error_map(ax, estimator, limit: float = 4.0, vmin: float | None = None, vmax: float | None = None, image=None):
    """Draw the estimated-error landscape (log10 e_hat) on ``ax``, coloured from its own lowest to
    highest value unless ``vmin``/``vmax`` are given; returns the image for a colour bar. Pass
    ``image`` (from ``estimated_error_image``) to draw many panels of one estimator without
    evaluating it again."""
    image = estimated_error_image(estimator, limit) if image is None else image
    img = ax.imshow(image, origin="lower", extent=(-limit, limit, -limit, limit),
                    cmap="magma", vmin=vmin, vmax=vmax, aspect="equal")
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), xticks=[], yticks=[])
    ax.grid(False)
    return img


def latent_scatter(ax, z, labels, palette, limit: float = 4.0, size: float = 2.0, alpha: float = 0.5):
    """z coloured by class (the paper's Fig. 2b/f)."""
    z = np.asarray(z)
    ax.scatter(z[:, 0], z[:, 1], c=palette[np.asarray(labels)], s=size, alpha=alpha, linewidths=0, rasterized=True)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), xticks=[], yticks=[], aspect="equal")
    ax.grid(False)


def latent_trajectories(ax, path, labels, palette, limit: float = 4.0):
    """Trajectories over training, T x n x 2, each fading from grey to its class colour (Fig. 2a/e)."""
    from matplotlib.collections import LineCollection

    path = np.asarray(path)
    steps = path.shape[0]
    grey = np.array([0.6, 0.6, 0.6])
    for i, label in enumerate(np.asarray(labels)):
        segments = np.stack([path[:-1, i], path[1:, i]], 1)
        t = (np.arange(steps - 1) + 1) / (steps - 1)
        colours = (1 - t)[:, None] * grey + t[:, None] * palette[label]
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.6, alpha=0.7))
    ax.scatter(path[-1, :, 0], path[-1, :, 1], c=palette[np.asarray(labels)], s=4, zorder=3)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), xticks=[], yticks=[], aspect="equal")
    ax.grid(False)


def activation_space_row(axes, estimator, palette, traj, traj_labels, z_train, y_train, wrong_train, z_test,
                         wrong_test, limit: float = 4.0):
    """The four panels of one row of the paper's Fig. 2: (a) training trajectories, (b) the final
    map by class, (c) estimated error with training points (misclassified in white), (d) the same
    with test points."""
    latent_trajectories(axes[0], traj, traj_labels, palette, limit)
    latent_scatter(axes[1], z_train, y_train, palette, limit)
    img = None
    for ax, z, wrong in ((axes[2], z_train, wrong_train), (axes[3], z_test, wrong_test)):
        img = error_map(ax, estimator, limit)
        z, wrong = np.asarray(z), np.asarray(wrong, dtype=bool)
        ax.scatter(z[~wrong, 0], z[~wrong, 1], s=1, c="tab:cyan", alpha=0.25, linewidths=0, rasterized=True)
        ax.scatter(z[wrong, 0], z[wrong, 1], s=6, c="white", edgecolors="black", linewidths=0.3)
    for ax, title in zip(axes, ("training trajectories", "final map, by class", "estimated error, train",
                                "estimated error, test")):
        ax.set_title(title, fontsize=10)
    return img


def error_violins(ax, log10_error, labels, wrong, class_names):
    """Fig. 7: per class, the estimated log10 error of correctly classified (green) and
    misclassified (red) samples, with each class's sensitivity (recall) above."""
    import pandas as pd
    import seaborn as sns

    labels, wrong = np.asarray(labels), np.asarray(wrong, dtype=bool)
    df = pd.DataFrame({"class": np.asarray(class_names)[labels], "log10 e_hat": np.asarray(log10_error),
                       "outcome": np.where(wrong, "misclassified", "correct")})
    sns.violinplot(df, x="class", y="log10 e_hat", hue="outcome", split=True, inner="quart", cut=0,
                   order=list(class_names), hue_order=["correct", "misclassified"],
                   palette={"correct": "tab:green", "misclassified": "tab:red"}, ax=ax, density_norm="width")
    top, span = df["log10 e_hat"].max(), np.ptp(df["log10 e_hat"].to_numpy()) or 1.0
    for k, name in enumerate(class_names):
        sensitivity = 1 - wrong[labels == k].mean()
        ax.text(k, top + 0.05 * span, f"{sensitivity:.0%}", ha="center", fontsize=8)
    ax.set_ylim(top=top + 0.15 * span)
    ax.legend(loc="lower right", fontsize=8)


def check_curve_plot(curve, goal: float | None, title: str, test_label: str = "test", name: str = "", ax=None):
    """Validation and test accuracy of a committed search check (``results.check_curve``) against
    the neighbours it evaluated, with the goal as a dotted line (None: no line). ``name`` prefixes
    the labels, and ``ax`` takes a second check onto the same axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    prefix = f"{name}: " if name else ""
    lines = ax.plot(curve["evaluations"], 100 * curve["val_acc"], marker=".", label=f"{prefix}validation")
    ax.plot(curve["evaluations"], 100 * curve["test_acc"], marker=".", ls="--", color=lines[0].get_color(),
            label=f"{prefix}{test_label}")
    if goal is not None:
        ax.axhline(100 * goal, color="0.5", ls=":", label="the book's goal (test)")
    ax.set(xlabel="neighbours evaluated", ylabel="accuracy (%)", title=title)
    ax.legend()
    return ax


def search_curves(ax, runs: dict, colours: dict | None = None, ylabel: str = "accuracy (%)"):
    """Validation (solid) and test (dashed) accuracy of SENSE searches (``SenseResult``s by name)
    against the neighbours each has evaluated, the measure of a search's cost. ``colours`` fixes a
    colour per name (default: the axes' cycle)."""
    for name, res in runs.items():
        h = res.history
        lines = ax.plot(h["evaluations"], 100 * np.array(h["val_acc"]), label=f"{name}: validation",
                        color=(colours or {}).get(name))
        ax.plot(h["evaluations"], 100 * np.array(h["test_acc"]), ls="--", color=lines[0].get_color(),
                label=f"{name}: test")
    ax.set(xlabel="neighbours evaluated", ylabel=ylabel)
    ax.legend(fontsize=8)
    return ax


def neighbourhood_plot(ax, res, initial_test: float, title: str):
    """A recorded SENSE search as the paper's Fig. 5: every neighbourhood a cloud of validation
    accuracies (jittered), its best neighbour in black, and the path the search takes in red, with
    the current network's test accuracy dashed; steps on the x axis."""
    rng = np.random.default_rng(0)
    for i, (_, _, _, acc) in enumerate(res.neighbourhoods):
        a = 100 * acc.numpy()
        ax.scatter(i + 1 + 0.25 * rng.standard_normal(len(a)), a, s=4, alpha=0.35)
        ax.scatter(i + 1, a.max(), color="black", s=25, zorder=3)
    path = [100 * res.member_val[0]] + [100 * v for v in res.history["val_acc"]]
    ax.plot(range(len(path)), path, color="red", lw=2, marker="o", ms=4, label="current network (validation)")
    ax.plot(range(len(path)), [100 * initial_test] + [100 * t for t in res.history["test_acc"]], color="0.3", ls="--",
            label="current network (test)")
    ax.set(xlabel="neighbourhood", ylabel="accuracy (%)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


# The colour of each layer of the MNIST net in step-by-step SENSE figures.
LAYER_COLOURS = {"1.0": "tab:red", "2.0": "tab:green", "fc": "tab:blue"}


def layer_steps_plot(ax, res, baseline_curve, title: str):
    """A SENSE search step by step (validation dots coloured by the layer each step worked on, test
    accuracy as a line) beside a backprop baseline's test accuracy per epoch (top axis): the
    paper's Figs. 6 and 7."""
    h = res.history
    steps = np.arange(1, len(h["val_acc"]) + 1)
    ax.scatter(steps, 100 * np.array(h["val_acc"]), c=[LAYER_COLOURS.get(layer, "0.5") for layer in h["layer"]], s=14,
               label="validation")
    ax.plot(steps, 100 * np.array(h["test_acc"]), color="black", marker=".", mfc="orange", label="test (SENSE)")
    ax.set(xlabel="step (neighbourhood)", title=title)
    top = ax.twiny()
    top.plot(range(len(baseline_curve)), 100 * np.array(baseline_curve), color="black", marker="o", mfc="violet",
             label="test (backprop, epochs on top axis)")
    top.set_xlabel("backprop epoch")
    ax.legend(loc="upper left", fontsize=8)
    top.legend(loc="lower right", fontsize=8)
    return ax
