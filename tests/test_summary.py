import json
import re
import shutil

import pytest

from aann.build import book_dir
from aann.paths import full_results_dir
from aann.summary import CLAIMS, PAPERS, Claim, glance_markdown, glance_rows, runs_markdown, verdict

FULL = full_results_dir()


def test_verdict_rules():
    higher = Claim("c", "s", "an accuracy", 0.90, lambda m: m["x"])
    assert verdict(higher, 0.90) == verdict(higher, 0.95) == "reproduced"
    assert verdict(higher, 0.82) == "partly" and verdict(higher, 0.80) == "not reproduced"  # 10 % of 0.90 = 0.09
    lower = Claim("c", "s", "a loss", 0.05, lambda m: m["x"], higher=False)
    assert verdict(lower, 0.04) == "reproduced" and verdict(lower, 0.054) == "partly"
    assert verdict(lower, 0.056) == "not reproduced"
    finding = Claim("c", "s", "a finding", None, lambda m: m["x"], finding=True)
    assert verdict(finding, 1.0) == "reproduced" and verdict(finding, 0.0) == "not reproduced"
    assert verdict(Claim("c", "s", "new", None, lambda m: m["x"]), 0.5) == "no number in the paper"


# The committed full-profile results, read as the landing page reads them: (paper, this book, verdict).
# A rerun of a chapter's full profile that moves a number updates this list, visibly.
COMMITTED = [
    ("99.0%", "98.3%", "partly"), ("89.0%", "86.9%", "partly"), ("holds", "holds", "reproduced"),
    ("+3.00%", "+0.46% (test: +0.00%)", "not reproduced"), ("63.4%", "57.4%", "partly"),
    ("-", "93.6%", "no number in the paper"), ("74.0%", "41.6%", "not reproduced"),
    ("-", "853", "no number in the paper"), ("holds", "holds", "reproduced"),
    ("holds", "does not hold", "not reproduced"), ("89.5%", "71.9%", "not reproduced"),
    ("5.03%", "8.34%", "not reproduced"), ("96.6%", "98.0%", "reproduced"), ("76.2%", "87.9%", "reproduced"),
    ("2.00", "1.27", "not reproduced"), ("-", "0.901 (max-softmax baseline: 0.687)", "no number in the paper"),
]


def test_the_landing_table_reads_the_committed_results():
    assert [(r["paper"], r["this book"], r["verdict"]) for r in glance_rows()] == COMMITTED


def test_the_landing_table_shows_the_committed_full_profile_numbers():
    rows = glance_rows()
    assert len(rows) == len(CLAIMS)
    for claim, row in zip(CLAIMS, rows):
        metrics = json.loads((FULL / f"{claim.chapter}.json").read_text())["metrics"]
        ours = claim.ours(metrics)
        if not claim.finding:
            assert row["this book"].startswith(claim.show.format(ours)), row
        assert row["verdict"] == verdict(claim, ours)
    table = glance_markdown()
    papers = {PAPERS[c.chapter] for c in CLAIMS}
    assert table.count("\n|") == len(CLAIMS) + 2 * len(papers)  # per paper a header and a rule; a line per claim
    assert all(f"### {paper}" in table for paper in papers)


def test_every_claim_links_to_a_section_of_its_chapter():
    for claim in CLAIMS:
        text = (book_dir() / f"{claim.chapter}.md").read_text()
        assert re.search(rf"^\({re.escape(claim.section)}\)=$", text, re.M), \
            f"{claim.chapter}.md has no label ({claim.section})="


def test_a_chapter_without_full_results_is_named(tmp_path):
    shutil.copytree(FULL, tmp_path / "full")
    (tmp_path / "full" / "sense.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"sense.json does not exist: store a full-profile run of sense"):
        glance_rows(tmp_path / "full")
    with pytest.raises(FileNotFoundError, match=r"sense.json does not exist"):
        runs_markdown(tmp_path / "full")


def test_a_claim_whose_metric_is_missing_is_named(tmp_path):
    shutil.copytree(FULL, tmp_path / "full")
    path = tmp_path / "full" / "car_racing.json"
    run = json.loads(path.read_text())
    del run["metrics"]["ternary90/mean_return"]
    path.write_text(json.dumps(run))
    with pytest.raises(KeyError, match=r"car_racing.json has no metric 'ternary90/mean_return' for the claim"):
        glance_rows(tmp_path / "full")


def test_the_runs_table_has_a_row_per_chapter():
    table = runs_markdown()
    for name in ("sparse_ternary", "architecture_manifold", "sense", "car_racing", "robustness", "self_introspection"):
        assert f"{{doc}}`{name}`" in table
