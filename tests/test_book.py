"""The book as a regression test: every chapter runs headlessly (quick profile) and must produce
its results; then the site must build with warnings as errors and render in a browser.

Tests in this module run in order: the site is built from the notebooks the chapter tests executed.
"""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from aann import build, site
from aann.profiles import budgets
from aann.results import read_results

ROOT = Path(__file__).resolve().parents[1]
# the quick budgets the counts below follow (read, never repeated: aann.profiles)
MANIFOLD, SENSE, CAR, ROBUSTNESS = (budgets(c, "quick") for c in ("architecture_manifold", "sense", "car_racing",
                                                                  "robustness"))

# Per chapter: result keys that must exist (fractions in [0, 1]), other keys that must exist
# ("values": returns, counts), exact counts, and lower bounds in the quick profile.
EXPECTED = {
    "sparse_ternary": {
        "keys": ["mnist/0/test_acc_mean", "mnist/90/test_acc_mean", "mnist/95/test_acc_mean",
                 "fashion_mnist/90/test_acc_mean", "fashion_mnist/95/test_acc_mean"],
        "at_least": {"mnist/90/test_acc_mean": 0.97, "mnist/95/test_acc_mean": 0.94,
                     "fashion_mnist/90/test_acc_mean": 0.80},
    },
    "architecture_manifold": {
        "keys": [f"{layer}/{what}" for layer in ("1.0", "2.0", "fc") for what in ("frac_better", "frac_worse")]
        + ["base_test_acc", "fc_all/frac_better", "fc_all/best_test_acc", "fc_all/certified_fraction"],
        "counts": {**{f"{layer}/n_neighbours": MANIFOLD.n_neighbours for layer in ("1.0", "2.0", "fc")},
                   "fc_all/n_neighbours": MANIFOLD.fc_neighbours},
        "at_least": {"base_test_acc": 0.97, "fc_all/certified_fraction": 0.9},
    },
    "sense": {
        "keys": ["random80/mnist/test_acc", "random80/fashion_mnist/test_acc", "climb/mnist/initial_test_acc",
                 "random90/alternate/test_acc", "random90/fc/test_acc", "random90/backprop/test_acc",
                 "steepest/best_val", "anneal/annealed/best_val", "random80_ce/mnist/test_acc",
                 "random80_ce/fashion_mnist/test_acc"],
        "values": ["anneal/annealed/downhill_moves"],
        "counts": {"random80/mnist/evaluations": SENSE.random80.steps * SENSE.random80.neighbours,
                   "random80_ce/mnist/evaluations": SENSE.random80.steps * SENSE.random80.neighbours,
                   "random80_fc_long/mnist/evaluations": SENSE.long_fc.steps * SENSE.long_fc.neighbours},
        # a hill-climb cannot end below its start on the split it selects on
        "at_least": {"climb/mnist/val_gain_mean": 0.0, "random80/mnist/test_acc": 0.2,
                     "random80_ce/mnist/test_acc": 0.2,
                     # the annealer proposes at random, so at the start's temperature it steps down
                     "anneal/annealed/downhill_moves": 1},
    },
    "car_racing": {
        "keys": ["imitation/90/test_acc_mean", "imitation/0/test_acc_mean", "random80_sense/test_acc",
                 "random80_sense/initial_test_acc", "majority/test_acc", "neighbours/fc/frac_better", "dagger/test_acc",
                 "random80_sense_ce/test_acc", "random80_sense_ce/val_acc"],
        "values": ["expert/mean_return", "expert3/mean_return", "ternary90/mean_return",
                   "random_policy/mean_return", "sense_driver/mean_return", "dagger/mean_return",
                   "dagger/val_return_start", "dagger/val_return_best"],
        "counts": {"drive/n_tracks": CAR.drive_tracks,
                   "random80_sense/evaluations": CAR.sense80.steps * CAR.sense80.neighbours,
                   "data/train_tracks": CAR.tracks["train"], "dagger/rounds": CAR.dagger.rounds},
        # the expert's goal is CarRacing's "solved" (900); acting through the 3 classes it must clear
        # the drivers' goal of 800 (else no net could); the imitating net must beat always-gas by a
        # margin (labels of version 2: the majority class is ~37 %, quick nets ~67 %)
        "at_least": {"expert/mean_return": 900.0, "expert3/mean_return": 800.0},
        "above": {"imitation/90/test_acc_mean": ("majority/test_acc", 0.25),
                  "expert/mean_return": "expert3/mean_return", "ternary90/mean_return": "random_policy/mean_return"},
    },
    "robustness": {
        "keys": [f"{m}/clean_top{k}" for m in ("alexnet_cifar", "vgg_cifar", "mnist_dense", "mnist_ternary90")
                 for k in (1, 5)]
        + [f"{m}/finding/{f}" for m in ("alexnet_cifar", "vgg_cifar")
           for f in ("lower_layers_more_fragile", "node_worse_than_synapse", "conv1_synapse_linear", "dense_robust",
                     "output_node_linear")]
        + [f"{m}/finding/{f}" for m in ("mnist_dense", "mnist_ternary90")
           for f in ("lower_layers_more_fragile", "node_worse_than_synapse", "conv1_synapse_linear",
                     "output_node_linear")]
        + ["alexnet_cifar/synapse50/conv1_retained", "vgg_cifar/gauss1/upper_max_loss",
           "mnist_ternary90/mean_acc/synapse_knockout", "mnist_dense/mean_acc/synapse_knockout"],
        "counts": {"n_eval_images": ROBUSTNESS.n_eval, "repeats": ROBUSTNESS.repeats},
        # chance is 0.1 top-1 on both data sets; the quick budgets train for minutes
        "at_least": {"alexnet_cifar/clean_top1": 0.4, "vgg_cifar/clean_top1": 0.3, "mnist_dense/clean_top1": 0.9,
                     "mnist_ternary90/clean_top1": 0.95},
    },
    "self_introspection": {
        "keys": ["net1/test_acc", "net2/test_acc", "estimator/mnist/auroc", "msp/mnist/auroc",
                 "estimator/cifar10/auroc", "msp/cifar10/auroc", "estimator/mnist/aupr", "msp/cifar10/fpr_at_95tpr",
                 "msp/mnist/saturated_fraction",
                 "estimator/mnist/train_auroc", "estimator_on_h/mnist/auroc", "estimator_on_h/cifar10/auroc",
                 "reorder/assignment_agreement", "fgsm/success_rate", "noise907/net1/sigma0.3",
                 "noise907/clone/sigma0.3"],
        "values": ["violin/mnist/median_gap", "violin/cifar10/median_gap", "fgsm/median_log10_error_rise"],
        "counts": {"noise907/copies": 200, "fgsm/attacks": 54},  # 6 images x 9 classes other than their own
        # chance is 0.1; Net2 trains for about a minute on a quarter of its width
        "at_least": {"net1/test_acc": 0.9, "net2/test_acc": 0.15},
        # reordering relabels units: the network's function must not change
        "at_most": {"reorder/max_logit_change": 1e-4},
    },
}


@pytest.fixture(autouse=True)
def _book_paths(monkeypatch):
    """Unlike the unit tests, the chapters use the book's real cache and results folder."""
    monkeypatch.delenv("AANN_CACHE", raising=False)
    monkeypatch.delenv("AANN_RESULTS", raising=False)


def test_every_chapter_has_expectations():
    assert set(build.chapters()) == set(EXPECTED)


def test_chapters_that_start_from_p_siren_networks_wait_for_them():
    """A chapter that loads the reference networks must run after the chapter that trains them
    (``python -m aann.build execute --jobs 2`` would otherwise train and cache them twice at once)."""
    for chapter in build.chapters():
        source = (build.book_dir() / f"{chapter}.md").read_text()
        if chapter != "sparse_ternary" and "reference_network(" in source:
            assert "sparse_ternary" in build.NEEDS.get(chapter, ()), chapter
    order = build.chapters()  # a sequential run goes in toc order: the needs come first there
    for chapter, needs in build.NEEDS.items():
        assert chapter in order and all(order.index(n) < order.index(chapter) for n in needs), (chapter, needs)


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", list(EXPECTED))  # toc order: later chapters reuse cached networks
def test_chapter_runs_and_meets_its_quick_targets(chapter):
    build.execute(chapter, "quick")
    res = read_results(chapter)
    assert res["profile"] == "quick"
    metrics = res["metrics"]
    for key in EXPECTED[chapter]["keys"]:
        assert key in metrics, f"{chapter}: results lack {key}"
        assert 0.0 <= metrics[key] <= 1.0, f"{chapter}: {key} = {metrics[key]} is not a fraction"
    for key in EXPECTED[chapter].get("values", []):
        assert key in metrics, f"{chapter}: results lack {key}"
    for key, other in EXPECTED[chapter].get("above", {}).items():
        other, margin = other if isinstance(other, tuple) else (other, 0.0)
        assert metrics[key] > metrics[other] + margin, \
            f"{chapter}: {key} = {metrics[key]:.4f} <= {other} = {metrics[other]:.4f} + {margin}"
    for key, count in EXPECTED[chapter].get("counts", {}).items():
        assert metrics.get(key) == count, f"{chapter}: {key} = {metrics.get(key)}, expected {count}"
    for key, bound in EXPECTED[chapter]["at_least"].items():
        assert metrics[key] >= bound, f"{chapter}: {key} = {metrics[key]:.4f} < {bound}"
    for key, bound in EXPECTED[chapter].get("at_most", {}).items():
        assert metrics[key] <= bound, f"{chapter}: {key} = {metrics[key]:.4g} > {bound}"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))


@pytest.mark.site
def test_site_builds_with_warnings_as_errors():
    # the edition `make book` renders: each chapter's stored full-profile execution, and the quick
    # execution above for a chapter with none stored yet; raises if jupyter-book exits non-zero
    html = site.build_site("published")
    for page in ["intro.html"] + [f"{c}.html" for c in build.chapters()]:
        assert (html / page).is_file(), page


def test_launch_buttons_are_configured_only_for_a_known_repository(monkeypatch):
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    monkeypatch.delenv("AANN_REPOSITORY", raising=False)
    assert site.with_launch_buttons({"html": {}}) == {"html": {}}
    monkeypatch.setenv("GITHUB_REPOSITORY", "owner/book")
    config = site.with_launch_buttons({"html": {"home_page_in_navbar": True}})
    assert config["repository"] == {"url": "https://github.com/owner/book", "branch": "main", "path_to_book": "results/full"}
    assert set(config["launch_buttons"]) >= {"colab_url", "binderhub_url"}
    assert config["html"] == {"home_page_in_navbar": True, "use_repository_button": True}
    monkeypatch.setenv("AANN_REPOSITORY", "not a repository")
    with pytest.raises(ValueError, match="owner/name"):
        site.with_launch_buttons({})


@pytest.mark.site
def test_the_landing_page_shows_the_results_at_a_glance():
    import html as html_lib

    from aann.summary import glance_rows

    text = html_lib.unescape(re.sub(r"<[^>]+>", "", (ROOT / "_build" / "html" / "intro.html").read_text()))
    assert "Results at a glance" in text
    for row in glance_rows():
        line = re.escape(row["claim"]) + r"\s+" + re.escape(row["paper"]) + r"\s+" + re.escape(row["this book"])
        assert re.search(line + r"\s+" + re.escape(row["verdict"]), text), f"landing page lacks the row {row}"

@pytest.mark.site
def test_every_chapter_cites_its_paper_and_the_references_page_lists_the_papers():
    html = ROOT / "_build" / "html"
    references = (html / "references.html").read_text()
    for author in ("Talukder", "Cheney", "Pardo"):
        assert author in references, f"the references page does not list {author}"
    papers = {"sparse_ternary": "Talukder", "architecture_manifold": "Talukder", "sense": "Talukder",
              "car_racing": "Talukder", "robustness": "Cheney", "self_introspection": "Pardo"}
    assert set(papers) == set(build.chapters())
    for chapter, author in papers.items():
        text = (html / f"{chapter}.html").read_text()
        assert re.search(rf'href="references.html#id\d+" title="[^"]*{author}', text), \
            f"{chapter}: no citation of its paper ({author} et al.) linking to the references page"


@pytest.mark.site
@pytest.mark.parametrize("chapter", sorted(EXPECTED))
def test_chapter_page_shows_its_figures(chapter):
    page = ROOT / "_build" / "html" / f"{chapter}.html"
    text = page.read_text()
    parser = _Images()
    parser.feed(text)
    figures = [s for s in parser.srcs if s.startswith("_images/")]
    assert len(figures) >= 2, f"{chapter}: only {len(figures)} figures rendered"
    for src in figures:
        f = page.parent / src
        assert f.is_file() and f.stat().st_size > 5000, f"{chapter}: figure {src} missing or empty"
    assert "Traceback" not in text and not re.search(r"\bError\b</span>", text)
    # animations are files the page loads lazily, never megabytes inlined into it
    assert "data:image/gif;base64" not in text
    for src in (s for s in parser.srcs if s.startswith("_static/media/")):
        assert (page.parent / src).is_file(), f"{chapter}: {src} is not in the site"
    assert "paper vs. this book" in text.lower()
    # the provenance note under the title: profile, device, date, commit
    assert re.search(r"This page was executed with the (quick|full) profile</strong>.{0,80} on (cpu|cuda): .{0,300}"
                     r"\d{4}-\d{2}-\d{2}, from commit [0-9a-f]{10}", text, re.S), f"{chapter}: no provenance note"
    # the chapter's source for download, beside the theme's button for the executed notebook
    link = re.search(rf'class="reference download internal" download="" href="(_downloads/\w+/{chapter}\.md)"', text)
    assert link and (page.parent / link.group(1)).read_text() == (ROOT / "book" / f"{chapter}.md").read_text()
    assert f'href="_sources/{chapter}.ipynb"' in text


class _Tables(HTMLParser):
    """The tables of a page: a list of rows, each a list of cell texts (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join(self._cell.split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def unmatched_numbers(table: list[list[str]], metrics: dict, columns=("this", "full profile")) -> list[str]:
    """The numbers in a paper-vs-book table's columns of this book's results (headers starting
    with ``columns``) that no metric shows at the precision printed (as a value or a percentage)."""
    header, missing = table[0], []
    keep = [i for i, h in enumerate(header) if h.lower().startswith(columns)]
    values = [v for v in metrics.values()]
    for row in table[1:]:
        for i in keep:
            if i >= len(row):
                continue
            # a number, not the digits of a name (CIFAR-10, top-5, mnist_ternary90)
            for token in re.findall(r"(?<![\w\-−])[-+−]?\d[\d,]*(?:\.\d+)?", row[i]):
                text = token.replace(",", "").replace("−", "-")
                decimals = len(text.split(".")[1]) if "." in text else 0
                number = float(text)
                if not any(round(scale * v, decimals) == number or round(abs(scale * v), decimals) == abs(number)
                           for v in values for scale in (1, 100)):
                    missing.append(f"{token} in '{row[0]}'")
    return missing


def test_table_numbers_are_matched_to_metrics_at_their_printed_precision():
    table = [["quantity", "paper", "this book"], ["accuracy", "99.0", "98.42 %"], ["gain", "3 %", "+1.5 points, 1,000 steps"]]
    assert unmatched_numbers(table, {"acc": 0.98417, "gain": 0.0151, "steps": 1000.0}) == []
    assert unmatched_numbers(table, {"acc": 0.98417, "gain": 0.0151}) == ["1,000 in 'gain'"]
    assert unmatched_numbers(table, {"acc": 0.9843, "gain": 0.015, "steps": 1000.0}) == ["98.42 in 'accuracy'"]
    named = [["what", "paper", "this book"], ["clean", "0.79", "top-1 0.770 (CIFAR-10), mnist_ternary90: held"]]
    assert unmatched_numbers(named, {"acc": 0.7698}) == []
    assert unmatched_numbers(named, {"acc": 0.7718}) == ["0.770 in 'clean'"]


@pytest.mark.site
@pytest.mark.parametrize("chapter", sorted(EXPECTED))
def test_a_published_page_shows_its_stored_run(chapter):
    """A chapter with a stored full-profile execution is rendered from it: the provenance note
    names that run, and every number in the paper-vs-book table is one of its stored metrics."""
    import html as html_lib

    from aann.paths import full_results_dir

    if not (full_results_dir() / f"{chapter}.ipynb").is_file():
        pytest.skip(f"{chapter} has no stored full-profile execution; its page shows the quick run above")
    run = json.loads((full_results_dir() / f"{chapter}.json").read_text())
    text = (ROOT / "_build" / "html" / f"{chapter}.html").read_text()
    assert "executed with the full profile" in text and run["commit"][:10] in text and run["date"] in text
    parser = _Tables()
    section = 'id="paper-vs-this-book"'  # the heading's section, not its entry in the page's contents
    assert section in text, f"{chapter}: no section headed 'Paper vs. this book'"
    parser.feed(html_lib.unescape(text.split(section, 1)[1]))
    assert parser.tables, f"{chapter}: no table after its paper vs. this book heading"
    assert unmatched_numbers(parser.tables[0], run["metrics"]) == [], chapter


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.site
@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (make test installs Debian's on apt machines)")
@pytest.mark.parametrize("page", ["intro.html"] + [f"{c}.html" for c in sorted(EXPECTED)])
def test_page_renders_in_headless_chromium(page, tmp_path):
    """A real browser draws the page: a screenshot that is not blank. The PNGs stay in
    _build/screenshots for a person to look at."""
    import matplotlib.image as mpimg

    out = ROOT / "_build" / "screenshots" / page.replace(".html", ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1280,3000",
           f"--screenshot={out}", (ROOT / "_build" / "html" / page).as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    img = mpimg.imread(out)
    assert img.shape[0] >= 1000 and img.std() > 0.05, f"{page}: the screenshot looks blank"


@pytest.mark.site
@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (make test installs Debian's on apt machines)")
def test_math_is_typeset_offline(tmp_path):
    """With MathJax vendored (npm available), formulas render without any network."""
    if not (ROOT / "_build" / "html" / "_static" / "mathjax" / "tex-mml-chtml.js").is_file():
        pytest.skip("MathJax was not vendored (no npm): the site loads it from its CDN")
    page = ROOT / "_build" / "html" / "sparse_ternary.html"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp_path)}).stdout
    assert dom.count("<mjx-container") >= 10, "MathJax did not typeset the page"
