r"""Cheney, Schrimpf & Kreiman's experiment as tables: sweep every layer of a network through the
three treatments (``aann.perturbations``), then the statistics of their sections 3-4 (Wilcoxon
rank-sum tests, $r^2$ of linear fits) and their findings, each decided by a rule stated here.

A sweep's table has one row per perturbed network: ``layer``, ``depth`` (0 = nearest the input),
``kind`` (``conv`` / ``dense`` / ``output``), ``treatment``, ``amount``, ``repeat``, ``top1``
(and ``top5``). Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from tqdm import tqdm

from . import cache
from .data import Split
from .perturbations import TREATMENTS, faults_grid, sweep, weight_layers

__all__ = ["FINDINGS", "DENSE_ROBUST_MAX_DROP", "LINEAR_R2", "layer_kinds", "sweep_table", "curves",
           "ranksum_p", "layer_pvalues", "node_vs_synapse", "linear_r2", "fragility", "findings"]

FINDINGS = ("lower_layers_more_fragile", "node_worse_than_synapse", "conv1_synapse_linear", "dense_robust",
            "output_node_linear")
DENSE_ROBUST_MAX_DROP = 0.10  # relative top-1 loss allowed up to 80 % synapse knockout (paper: 4.8 %)
LINEAR_R2 = 0.90  # a fall-off counts as linear from this r^2 of a straight-line fit (paper: 0.930 for conv1)


def layer_kinds(model: nn.Module) -> dict[str, str]:
    """``conv``, ``dense`` (a hidden Linear) or ``output`` (the last Linear), by layer name."""
    layers = weight_layers(model)
    last = list(layers)[-1]
    return {name: "output" if name == last else ("conv" if isinstance(m, nn.Conv2d) else "dense")
            for name, m in layers.items()}


def sweep_table(model: nn.Module, data, grids: dict, repeats: int, layers=None, seed: int = 0,
                topk=(1, 5), progress: bool = True, use_cache: bool = True, **sweep_kwargs) -> pd.DataFrame:
    """Every layer (or ``layers``) x treatment x amount of ``grids[treatment]`` x ``repeats``
    independent draws, evaluated on ``data`` by ``aann.perturbations.sweep``.

    Layer by layer, so that a long sweep stopped halfway resumes at the next layer: with
    ``use_cache`` and ``data`` a :class:`~aann.data.Split`, each layer's accuracies are kept in the
    model cache under the network's exact weights, the images' fingerprint and everything that
    draws the faults (a stream of batches has no fingerprint, so it is always swept afresh). A
    layer swept alone computes exactly what the whole sweep computes for it: each fault's weights
    come from its own seed, and a batch's perturbed copies are grouped per layer either way."""
    kinds = layer_kinds(model)
    layers = list(kinds) if layers is None else list(layers)
    treatments = [t for t in TREATMENTS if t in grids]
    unknown = set(grids) - set(TREATMENTS)
    if unknown:
        raise ValueError(f"unknown treatments {sorted(unknown)}; allowed: {', '.join(TREATMENTS)}")
    faults = faults_grid(layers, treatments, grids, repeats)
    if use_cache and isinstance(data, Split):
        # what every layer's entry shares, hashed once: the exact weights, the images, the draws
        shared = {"kind": "perturbation_sweep", "model": cache.state_fingerprint(model), "data": data.fingerprint(),
                  "topk": list(topk), "seed": seed, "device": next(model.parameters()).device.type,
                  "sweep_kwargs": {k: str(v) for k, v in sweep_kwargs.items()}}
        acc = np.zeros((len(faults), len(topk)))
        for layer in tqdm(layers, desc="sweep layers", unit="layer", disable=not progress):
            idx = [i for i, f in enumerate(faults) if f.layer == layer]
            acc[idx] = _layer_sweep(model, data, [faults[i] for i in idx], topk, seed, sweep_kwargs, shared)
    else:
        acc = sweep(model, data, faults, topk=topk, seed=seed, progress=progress, **sweep_kwargs)
    depth = {name: i for i, name in enumerate(kinds)}
    rows = [{"layer": f.layer, "depth": depth[f.layer], "kind": kinds[f.layer], "treatment": f.treatment,
             "amount": f.amount, "repeat": f.repeat, **{f"top{k}": a[j] for j, k in enumerate(topk)}}
            for f, a in zip(faults, acc)]
    return pd.DataFrame(rows)


def _layer_sweep(model: nn.Module, data: Split, faults: list, topk, seed: int, sweep_kwargs: dict,
                 shared: dict) -> np.ndarray:
    """``sweep`` of one layer's faults, read from the model cache when it was run before (under
    ``shared`` and the faults)."""
    key = {**shared, "faults": [(f.layer, f.treatment, f.amount, f.repeat) for f in faults]}
    hit = cache.load(key, counted_as="sweeps read")
    if hit is not None:
        return hit[0]["accuracy"].numpy()
    acc = sweep(model, data, faults, topk=topk, seed=seed, progress=False, **sweep_kwargs)
    cache.save(key, {"accuracy": torch.from_numpy(acc)}, counted_as="sweeps made")
    return acc


def curves(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Mean and standard deviation over repeats, per layer, treatment and amount."""
    g = table.groupby(["treatment", "depth", "layer", "kind", "amount"], sort=True)[metric]
    return g.agg(["mean", "std", "count"]).reset_index()


def ranksum_p(a, b) -> float:
    """Two-sided Wilcoxon rank-sum p-value (the paper's test); 1.0 when both samples are constant
    and equal."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(stats.ranksums(a, b).pvalue)


def layer_pvalues(table: pd.DataFrame, treatment: str, amount: float, metric: str = "top1") -> pd.DataFrame:
    """Layer x layer rank-sum p-values at one amount of one treatment."""
    sub = table[(table.treatment == treatment) & np.isclose(table.amount, amount)]
    layers = list(dict.fromkeys(sub.sort_values("depth").layer))
    vals = {name: sub[sub.layer == name][metric].to_numpy() for name in layers}
    return pd.DataFrame([[ranksum_p(vals[a], vals[b]) for b in layers] for a in layers], index=layers,
                        columns=layers)


def node_vs_synapse(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Per layer and intermediate fraction (0 < f < 1): mean top-1 under node and under synapse
    knockout, and the rank-sum p-value between them."""
    rows = []
    ko = table[table.treatment.isin(["node_knockout", "synapse_knockout"]) & (table.amount > 0) & (table.amount < 1)]
    for (depth, layer, amount), g in ko.groupby(["depth", "layer", "amount"]):
        node = g[g.treatment == "node_knockout"][metric].to_numpy()
        syn = g[g.treatment == "synapse_knockout"][metric].to_numpy()
        if len(node) and len(syn):
            rows.append({"layer": layer, "depth": depth, "amount": amount, "node": node.mean(), "synapse": syn.mean(),
                         "p": ranksum_p(node, syn)})
    return pd.DataFrame(rows)


def linear_r2(table: pd.DataFrame, treatment: str, layers, metric: str = "top1") -> float:
    """$r^2$ of one straight line fitted to the mean curves of ``layers`` (pooled), over the whole
    grid of ``treatment``."""
    c = curves(table[table.treatment == treatment], metric)
    c = c[c.layer.isin(list(layers))]
    if len(c) < 3 or np.ptp(c["mean"]) == 0:
        return float("nan")
    return float(stats.linregress(c["amount"], c["mean"]).rvalue ** 2)


def fragility(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Mean accuracy over each treatment's grid (amount > 0), per layer: lower = more fragile."""
    sub = table[table.amount > 0]
    return sub.groupby(["treatment", "depth", "layer", "kind"])[metric].mean().reset_index(name="mean_acc")


def findings(table: pd.DataFrame, clean: float, metric: str = "top1") -> dict:
    """The paper's five findings on one model, each ``{"held": bool | None, "evidence": str}``
    (``None`` where the model has no such layer). Rules:

    - lower_layers_more_fragile: in every treatment the first conv layer's mean accuracy over the
      grid is below the median of the later conv layers', and the rank correlation between depth and
      mean accuracy over the conv layers is positive (averaged over treatments);
    - node_worse_than_synapse: node knockout leaves a lower mean accuracy than synapse knockout in
      >= 90 % of the (layer, fraction) cells with 0 < fraction < 1;
    - conv1_synapse_linear: the first conv layer's synapse-knockout curve has $r^2 \\ge$ 0.90 and a
      higher $r^2$ than the later conv layers' curves pooled;
    - dense_robust: every hidden dense layer keeps >= 90 % of the clean accuracy up to 80 % synapse
      knockout;
    - output_node_linear: the output layer's node-knockout curve has $r^2 \\ge$ 0.90.
    """
    kinds = table.drop_duplicates("layer").sort_values("depth").set_index("layer")["kind"]
    conv = [name for name, k in kinds.items() if k == "conv"]
    dense = [name for name, k in kinds.items() if k == "dense"]
    output = [name for name, k in kinds.items() if k == "output"]
    out = {}

    frag = fragility(table, metric)
    if len(conv) >= 2:
        below, rhos = [], []
        for t, g in frag[frag.layer.isin(conv)].groupby("treatment"):
            g = g.sort_values("depth")
            below.append(g.mean_acc.iloc[0] < g.mean_acc.iloc[1:].median())
            rhos.append(stats.spearmanr(g.depth, g.mean_acc).statistic if len(g) > 2 else
                        np.sign(g.mean_acc.iloc[1] - g.mean_acc.iloc[0]))
        out["lower_layers_more_fragile"] = {
            "held": bool(all(below) and np.nanmean(rhos) > 0),
            "evidence": f"first conv below the later ones' median in {sum(below)}/{len(below)} treatments; "
                        f"mean rank correlation depth vs accuracy {np.nanmean(rhos):+.2f}"}
    else:
        out["lower_layers_more_fragile"] = {"held": None, "evidence": "fewer than two conv layers"}

    nvs = node_vs_synapse(table, metric)
    if len(nvs):
        share = float((nvs.node < nvs.synapse).mean())
        sig = float(((nvs.node < nvs.synapse) & (nvs.p < 0.05)).mean())
        out["node_worse_than_synapse"] = {
            "held": share >= 0.9,
            "evidence": f"node < synapse in {share:.0%} of {len(nvs)} cells (p < 0.05 in {sig:.0%})"}
    else:
        out["node_worse_than_synapse"] = {"held": None, "evidence": "no knockout sweep"}

    if conv:
        r2_first = linear_r2(table, "synapse_knockout", conv[:1], metric)
        r2_rest = linear_r2(table, "synapse_knockout", conv[1:], metric) if len(conv) > 1 else float("nan")
        held = r2_first >= LINEAR_R2 and (np.isnan(r2_rest) or r2_first > r2_rest)
        out["conv1_synapse_linear"] = {
            "held": bool(held), "evidence": f"r^2 first conv {r2_first:.3f}, later conv layers {r2_rest:.3f}"}
    else:
        out["conv1_synapse_linear"] = {"held": None, "evidence": "no conv layer"}

    if dense:
        syn = curves(table[(table.treatment == "synapse_knockout") & (table.amount <= 0.8 + 1e-9)], metric)
        worst = {name: 1 - syn[syn.layer == name]["mean"].min() / clean for name in dense}
        out["dense_robust"] = {
            "held": all(v < DENSE_ROBUST_MAX_DROP for v in worst.values()),
            "evidence": "largest relative loss up to 80 %: " + ", ".join(f"{k} {v:.1%}" for k, v in worst.items())}
    else:
        out["dense_robust"] = {"held": None, "evidence": "no hidden dense layer"}

    r2_out = linear_r2(table, "node_knockout", output, metric) if output else float("nan")
    out["output_node_linear"] = ({"held": bool(r2_out >= LINEAR_R2), "evidence": f"r^2 {r2_out:.3f}"}
                                 if output and not np.isnan(r2_out) else {"held": None, "evidence": "no output sweep"})
    return out
