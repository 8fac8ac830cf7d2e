"""The book's results at a glance: each paper's headline claims beside this book's full-profile
numbers (``results/full/<chapter>.json``), with a verdict computed by a stated rule.

The claims and the papers' numbers are the papers' (typed here once, with the figure they come
from); every number of this book and every verdict is read or computed from the committed results
files, so the landing page can never disagree with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .paths import full_results_dir
from .results import format_duration, read_results

__all__ = ["VERDICTS", "PAPERS", "Claim", "CLAIMS", "verdict", "glance_rows", "glance_markdown", "runs_markdown"]

# How close "partly" is: within this fraction of the paper's number (relative, one rule for every
# claim, so that no claim gets a margin of its own choosing).
PARTLY = 0.10

VERDICTS = {
    "reproduced": "this book's number is at least as good as the paper's, or the paper's finding holds",
    "partly": f"worse than the paper's number by less than {PARTLY:.0%} of it",
    "not reproduced": f"worse by {PARTLY:.0%} of the paper's number or more, or the paper's finding does not hold",
    "no number in the paper": "the paper does not report this number (or does not do this at all)",
}


# The paper each chapter reproduces: the landing page groups the claims under them.
_AANN = "Talukder, Raghavan & Yue: architecture agnostic neural networks"
PAPERS = {
    **dict.fromkeys(("sparse_ternary", "architecture_manifold", "sense", "car_racing"), _AANN),
    "robustness": "Cheney, Schrimpf & Kreiman: robustness to internal perturbations",
    "self_introspection": "Pardo et al.: self-introspection",
}


@dataclass(frozen=True)
class Claim:
    """One row: ``chapter`` and ``section`` (a MyST label) where the book shows it, the paper's
    ``claim`` in words with its ``paper`` number (None: none given, or a finding that holds or not),
    ``ours(metrics)`` this book's number, ``show`` how to print it, whether ``higher`` is better
    (else lower); for a finding (``paper`` None, ``finding`` True), ``ours`` is 1 when it holds;
    ``detail(metrics)`` adds context to the number."""

    chapter: str
    section: str
    claim: str
    paper: float | None
    ours: Callable[[dict], float]
    show: str = "{:.1%}"
    higher: bool = True
    finding: bool = False
    detail: Callable[[dict], str] | None = None  # printed after this book's number, e.g. a baseline


def _key(name: str) -> Callable[[dict], float]:
    return lambda m: m[name]


def _held(*names: str) -> Callable[[dict], float]:
    return lambda m: float(all(m[n] == 1.0 for n in names))


CLAIMS = (
    Claim("sparse_ternary", "psiren-accuracy", "MNIST, 90 % sparse ternary net after p-SIREN: test accuracy (read off Fig. 2a)",
          0.990, _key("mnist/90/test_acc_mean")),
    Claim("sparse_ternary", "psiren-accuracy", "Fashion-MNIST, 90 % sparse: test accuracy (read off Fig. 12)",
          0.890, _key("fashion_mnist/90/test_acc_mean")),
    Claim("architecture_manifold", "neighbours-fig3",
          "first neighbours better than the trained net: more in the higher layers (2.0, fc) than in the first "
          "convolution (1.0) (Fig. 3)", None,
          lambda m: float(m["2.0/frac_better"] > m["1.0/frac_better"] and m["fc/frac_better"] > m["1.0/frac_better"]),
          show="{:.0f}", finding=True),
    # the paper measured its gain on the split it selected on (test, in its Alg. 2): here that split is validation
    Claim("sense", "sense-climb", "SENSE from the 90 % p-SIREN net: gain on the selection split (Fig. 5)",
          0.03, _key("climb/mnist/val_gain_mean"), show="{:+.2%}",
          detail=lambda m: f"(test: {_signed_pct(m['climb/mnist/test_gain_mean'])})"),
    Claim("sense", "sense-random80", "SENSE from a random 80 % net, MNIST: test accuracy (Fig. 8a)",
          0.634, _key("random80/mnist/test_acc")),
    Claim("sense", "sense-smooth-fitness", "the same search with a cross-entropy fitness, MNIST: test accuracy",
          None, _key("random80_ce/mnist/test_acc")),
    Claim("car_racing", "car-sense", "SENSE from a random 80 % car net: imitation test accuracy (Fig. 8b)",
          0.740, _key("random80_sense/test_acc")),
    Claim("car_racing", "car-driving", "the 90 % ternary car net driving: mean return on unseen tracks (video)",
          None, _key("ternary90/mean_return"), show="{:.0f}"),
    Claim("robustness", "robustness-findings", "lower layers more fragile than higher ones (AlexNet and VGG-16, Figs. 1-5)",
          None, _held("alexnet_cifar/finding/lower_layers_more_fragile", "vgg_cifar/finding/lower_layers_more_fragile"),
          show="{:.0f}", finding=True),
    Claim("robustness", "robustness-findings", "node knockout worse than synapse knockout (Fig. 2)",
          None, _held("alexnet_cifar/finding/node_worse_than_synapse"), show="{:.0f}", finding=True),
    Claim("robustness", "robustness-vs-paper", "conv3-5 keep at least 89.5 % of their accuracy at 50 % synapse knockout (Fig. 1)",
          0.708 / 0.791, _key("alexnet_cifar/synapse50/conv3_5_min_retained")),
    Claim("robustness", "robustness-vs-paper", "VGG-16 after block3.conv1: largest loss of top-1 accuracy at Gaussian m = 1, smaller is more "
          "robust (Fig. 5)",
          0.0503, _key("vgg_cifar/gauss1/upper_max_loss"), show="{:.2%}", higher=False),
    Claim("self_introspection", "introspection-models", "Net1 test accuracy (MNIST, Table 1)",
          0.9657, _key("net1/test_acc")),
    Claim("self_introspection", "introspection-models", "Net2 test accuracy (CIFAR-10, Table 1)",
          0.762, _key("net2/test_acc")),
    Claim("self_introspection", "introspection-violins",
          "estimated error of misclassified MNIST digits: orders of magnitude above correct ones, the gap of "
          "the medians of log10 e (Fig. 7)",
          2.0, _key("violin/mnist/median_gap"), show="{:.2f}"),
    Claim("self_introspection", "introspection-detector",
          "the error estimator as a misclassification detector, MNIST: AUROC",
          None, _key("estimator/mnist/auroc"), show="{:.3f}",
          detail=lambda m: f"(max-softmax baseline: {m['msp/mnist/auroc']:.3f})"),
)


def verdict(claim: Claim, ours: float) -> str:
    """The claim's verdict for this book's number ``ours`` (see ``VERDICTS``)."""
    if claim.finding:
        return "reproduced" if ours == 1.0 else "not reproduced"
    if claim.paper is None:
        return "no number in the paper"
    shortfall = (claim.paper - ours) if claim.higher else (ours - claim.paper)
    if shortfall <= 0:
        return "reproduced"
    return "partly" if shortfall < PARTLY * abs(claim.paper) else "not reproduced"


def _signed_pct(x: float) -> str:
    return f"{0.0 if abs(x) < 5e-5 else x:+.2%}"  # no "-0.00%" for a change too small to show


def _full_run(chapter: str, folder: Path) -> dict:
    try:
        return read_results(chapter, folder)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder / (chapter + '.json')} does not exist: store a full-profile run of "
                                f"{chapter} (python -m aann.build execute {chapter} --profile full --store)") from e


def glance_rows(folder: Path | None = None) -> list[dict]:
    """One row per claim: chapter, section, claim, the paper's number, this book's and the verdict.
    A chapter without a committed full-profile file, or a file without a claim's metric, is an
    error that names them (the landing page must not go silent about a claim)."""
    folder = Path(folder) if folder else full_results_dir()
    results, rows = {}, []
    for c in CLAIMS:
        if c.chapter not in results:
            results[c.chapter] = _full_run(c.chapter, folder)
        run = results[c.chapter]
        try:
            ours = c.ours(run["metrics"])
        except KeyError as e:
            raise KeyError(f"{folder / (c.chapter + '.json')} has no metric {e} for the claim {c.claim!r}: "
                           "rerun the chapter's full profile") from e
        shown = ("holds" if ours == 1.0 else "does not hold") if c.finding else c.show.format(ours)
        rows.append({"chapter": c.chapter, "section": c.section, "claim": c.claim,
                     "paper": "holds" if c.finding else "-" if c.paper is None else c.show.format(c.paper),
                     "this book": shown if c.detail is None else f"{shown} {c.detail(run['metrics'])}",
                     "verdict": verdict(c, ours)})
    return rows


def glance_markdown(folder: Path | None = None) -> str:
    """The results-at-a-glance tables as MyST Markdown, one per paper (``PAPERS``), each row linking
    to its section (named by its chapter), with the verdict rules."""
    lines, paper = [], None
    for r in glance_rows(folder):
        if PAPERS[r["chapter"]] != paper:
            paper = PAPERS[r["chapter"]]
            lines += ["", f"### {paper}", "", "| claim | paper | this book (full profile) | verdict | where |",
                      "| --- | --- | --- | --- | --- |"]
        where = f"{{ref}}`{r['chapter'].replace('_', ' ')} <{r['section']}>`"
        lines.append(f"| {r['claim']} | {r['paper']} | {r['this book']} | {r['verdict']} | {where} |")
    rules = "; ".join(f"*{k}*: {v}" for k, v in VERDICTS.items())
    return "\n".join(lines).lstrip("\n") + f"\n\nVerdicts: {rules}.\n"


def runs_markdown(folder: Path | None = None) -> str:
    """The full-profile runs behind the numbers, one row per chapter of ``_toc.yml``: device, date,
    commit and wall time as their results files record them ("not recorded" where an older file
    lacks a field; a chapter without a file is an error that names it)."""
    from .build import chapters

    folder = Path(folder) if folder else full_results_dir()
    lines = ["| chapter | device | date | commit | wall time |", "| --- | --- | --- | --- | --- |"]
    for name in chapters():
        run = _full_run(name, folder)
        wall = format_duration(run["wall_time_s"]) if "wall_time_s" in run else "not recorded"
        if run.get("reused"):
            wall += f" ({run['reused']})"
        date = run.get("date", "not recorded").replace("-", "\u2011")  # non-breaking hyphens: one line
        lines.append(f"| {{doc}}`{name}` | {run['device']} | {date} | {run.get('commit', 'not recorded')} | {wall} |")
    return "\n".join(lines) + "\n"
