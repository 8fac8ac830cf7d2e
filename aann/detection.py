"""Misclassification detection: how well a score ranks a classifier's errors above its successes.

Used to test self-introspection's confidence c = -log10 e_hat against the maximum softmax
probability baseline (Hendrycks and Gimpel 2017). A score is "higher means more likely an error";
``positives`` marks the errors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "roc_curve", "average_precision", "fpr_at_tpr", "msp_error_score", "detection_report"]


def _check(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives).ravel().astype(bool)
    if scores.shape != positives.shape:
        raise ValueError(f"{scores.size} scores but {positives.size} labels")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if positives.all() or not positives.any():
        raise ValueError("need at least one positive (error) and one negative (correct) sample")
    return scores, positives


def auroc(scores, positives) -> float:
    """Area under the ROC curve: the probability that a random error scores above a random
    success (ties count 1/2), from the Mann-Whitney U statistic with average ranks."""
    scores, positives = _check(scores, positives)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _roc_points(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP and FP counts at each distinct threshold, from the highest score down (ties together)."""
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positives[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each run of equal scores
    tp = np.cumsum(p)[last]
    fp = (last + 1) - tp
    return tp, fp, s[last]


def roc_curve(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve, (false-positive rates, true-positive rates), from (0, 0) to (1, 1)."""
    scores, positives = _check(scores, positives)
    tp, fp, _ = _roc_points(scores, positives)
    return np.r_[0.0, fp / (~positives).sum()], np.r_[0.0, tp / positives.sum()]


def average_precision(scores, positives) -> float:
    """Area under the precision-recall curve of the errors, as average precision:
    sum over thresholds of (recall step) x precision."""
    scores, positives = _check(scores, positives)
    tp, fp, _ = _roc_points(scores, positives)
    precision = tp / (tp + fp)
    recall = tp / positives.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(scores, positives, tpr: float = 0.95) -> float:
    """The fraction of successes flagged when the threshold is set to catch ``tpr`` of the errors."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    scores, positives = _check(scores, positives)
    tp, fp, _ = _roc_points(scores, positives)
    i = np.searchsorted(tp / positives.sum(), tpr - 1e-12)  # first threshold reaching the rate
    return float(fp[i] / (~positives).sum())


def msp_error_score(logits) -> np.ndarray:
    """The maximum-softmax-probability baseline as an error score ("higher means more likely an
    error"), computed so that it cannot saturate:

        s = log sum_{j != k*} exp(l_j - l_{k*}),    max_k softmax_k = 1 / (1 + e^s),

    so s ranks the samples exactly as -max softmax does. Computed directly, max softmax rounds to
    exactly 1.0 in float32 once the top logit leads by ~17 (float64: ~37), and a confident classifier's
    correct *and* wrong samples then tie, which makes the baseline look worse than it is."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be N x K with K >= 2 classes, got shape {logits.shape}")
    rows = np.arange(len(logits))
    top = logits.argmax(1)
    rest = logits - logits[rows, top][:, None]
    rest[rows, top] = -np.inf  # the winner itself is left out of the sum
    return np.logaddexp.reduce(rest, axis=1)


def detection_report(scores, positives, tpr: float = 0.95) -> dict[str, float]:
    """``{"auroc", "aupr", "fpr_at_95tpr"}`` (the last named for ``tpr``)."""
    return {"auroc": auroc(scores, positives), "aupr": average_precision(scores, positives),
            f"fpr_at_{round(tpr * 100)}tpr": fpr_at_tpr(scores, positives, tpr)}
