"""How far a chapter's re-executed metrics may move from its stored full-profile run.

``python -m aann.build verify CHAPTER`` executes a chapter in the full profile and compares every
metric it writes with ``results/full/CHAPTER.json`` under the tolerance this module gives its key:
the regression run of the book. On the same machine and software a chapter reproduces its numbers
exactly; another GPU, another CPU kernel or another torch version rounds differently, training and
searches follow another trajectory from the first differing bit, and the tolerances say how much
that may move each kind of number. Counts set by a budget and the verdicts of findings must not
move at all.

Each key gets the tolerance of the first pattern (``fnmatch``) that matches it, the chapter's own
rules before the shared ones; a key no rule matches is an error, so a new metric cannot escape the
comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["Tolerance", "RULES", "SHARED_RULES", "tolerance", "Difference", "compare", "report"]


@dataclass(frozen=True)
class Tolerance:
    """``|new - stored| <= abs + rel * |stored|``."""

    abs: float
    rel: float
    why: str

    def allows(self, stored: float, new: float) -> bool:
        if math.isnan(stored) or math.isnan(new):
            return math.isnan(stored) and math.isnan(new)
        return abs(new - stored) <= self.abs + self.rel * abs(stored) + 1e-12

    def describe(self) -> str:
        parts = [f"±{self.abs:g}" if self.abs else "", f"±{self.rel:.0%}" if self.rel else ""]
        return " + ".join(p for p in parts if p) or "exact"


EXACT = Tolerance(0, 0, "set by the budget, or a verdict: it must not move")
TRAINED = Tolerance(0.01, 0, "a trained network's accuracy: another rounding trains another network")
SEARCHED = Tolerance(0.02, 0, "the end of a search: one differing comparison sends it down another path")
SPREAD = Tolerance(0.01, 0, "a spread or gain over a few networks")
FRACTION = Tolerance(0.03, 0, "a share of sampled neighbours or perturbations")
RANKING = Tolerance(0.02, 0, "an AUROC or AUPR over thousands of test images")
COUNT = Tolerance(0, 0.02, "evaluations of a search, set by its steps and neighbourhoods")
RETURN = Tolerance(0, 0.15, "a car's mean return over a few tracks: a single crash moves it")
SHAPE = Tolerance(0.05, 0, "a fit statistic (R², agreement) of a curve or a map")

SHARED_RULES: list[tuple[str, Tolerance]] = [
    ("n_*", EXACT), ("*/n_*", EXACT), ("repeats", EXACT), ("*/copies", EXACT), ("*/attacks", EXACT),
    ("*/rounds", EXACT), ("data/*", EXACT), ("*/exhaustive", EXACT), ("*/finding/*", EXACT),
    ("*_sd", SPREAD), ("*gain*", SPREAD),
    ("*/evaluations", COUNT),
    ("*frac_*", FRACTION),
    ("*auroc", RANKING), ("*aupr", RANKING), ("*/fpr_at_*", Tolerance(0.05, 0, "one point of a ROC curve")),
    ("*return*", RETURN),
    ("*test_acc*", TRAINED), ("*val_acc*", TRAINED), ("*clean_top*", TRAINED), ("*/mean_acc/*", TRAINED),
]

RULES: dict[str, list[tuple[str, Tolerance]]] = {
    "sparse_ternary": [],
    "architecture_manifold": [("*best_test_acc", SEARCHED),
                              ("*certified_fraction", Tolerance(0.01, 0, "test images no fc swap can flip: margins "
                                                                 "of a trained network"))],
    "sense": [("climb/*initial*", TRAINED), ("random*/*initial*", EXACT), ("*test_acc", SEARCHED),
              ("*val_acc", SEARCHED), ("*best_val", SEARCHED), ("*test_of_best", SEARCHED),
              ("*downhill_moves", Tolerance(2, 0.2, "moves against the fitness along a search"))],
    "car_racing": [("random*_sense*/initial*", EXACT), ("random*_sense*", SEARCHED),
                   ("dagger/best_round", Tolerance(1, 0, "the round chosen on validation drives")),
                   ("dagger/train_frames", Tolerance(0, 0.2, "frames gathered by the chosen rounds"))],
    "robustness": [("*/r?/*", SHAPE), ("*max_loss", Tolerance(0.03, 0, "the largest loss of a perturbation curve")),
                   ("*/synapse*/*retained", Tolerance(0.03, 0, "accuracy retained under knockout"))],
    "self_introspection": [
        ("*reconstruction_r2", SHAPE), ("reorder/assignment_agreement", SHAPE), ("reorder/units_per_class_cv", SHAPE),
        ("reorder/max_logit_change", Tolerance(0.01, 0, "reordering must not change the outputs beyond rounding")),
        ("violin/*", Tolerance(0, 0.15, "a median gap between two distributions")),
        ("fgsm/success_rate", Tolerance(0.1, 0, "the share of a few dozen attacks that succeed")),
        ("fgsm/median_log10_error_rise", Tolerance(0.5, 0, "a median over a few dozen attacks")),
        ("noise*/*/sigma*", Tolerance(0.02, 0, "accuracy under input noise"))],
}


def tolerance(chapter: str, key: str) -> Tolerance:
    """The tolerance of ``key`` in ``chapter``'s results; an error names a key no rule covers."""
    if chapter not in RULES:
        raise ValueError(f"unknown chapter {chapter!r}; chapters with tolerances: {', '.join(RULES)}")
    for pattern, tol in RULES[chapter] + SHARED_RULES:
        if fnmatchcase(key, pattern):
            return tol
    raise KeyError(f"no tolerance for {chapter} metric {key!r}: add a rule for it to aann.verify.RULES")


@dataclass(frozen=True)
class Difference:
    key: str
    stored: float | None
    new: float | None
    tolerance: Tolerance | None

    @property
    def moved(self) -> bool:
        if self.stored is None or self.new is None:
            return True
        return not self.tolerance.allows(self.stored, self.new)

    def row(self) -> dict:
        show = lambda v: "missing" if v is None else f"{v:.6g}"  # noqa: E731
        return {"metric": self.key, "stored": show(self.stored), "new": show(self.new),
                "allowed": self.tolerance.describe() if self.tolerance else "",
                "moved": "MOVED" if self.moved else ""}


def compare(chapter: str, stored: dict, new: dict) -> list[Difference]:
    """Every metric of either run with its tolerance; a metric only one run has has moved."""
    out = []
    for key in sorted(stored.keys() | new.keys()):
        out.append(Difference(key, stored.get(key), new.get(key), tolerance(chapter, key)))
    return out


def report(chapter: str, differences: list[Difference]) -> str:
    """A plain-text table of the metrics that moved, or one line saying none did."""
    moved = [d for d in differences if d.moved]
    if not moved:
        return f"{chapter}: all {len(differences)} metrics within their tolerances"
    rows = [d.row() for d in moved]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in rows[0]}
    lines = ["  ".join(c.ljust(w) for c, w in widths.items())]
    lines += ["  ".join(r[c].ljust(w) for c, w in widths.items()) for r in rows]
    return f"{chapter}: {len(moved)} of {len(differences)} metrics moved\n" + "\n".join(lines)
