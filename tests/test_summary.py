import json
import re
import shutil

import pytest

from aann.build import book_dir
from aann.paths import project_root
from aann.summary import CLAIMS, Claim, glance_markdown, glance_rows, runs_markdown, verdict

FULL = project_root() / "results" / "full"


def test_verdict_rules():
    higher = Claim("c", "s", "an accuracy", 0.90, lambda m: m["x"], margin=0.02)
    assert verdict(higher, 0.90) == verdict(higher, 0.95) == "reproduced"
    assert verdict(higher, 0.885) == "partly" and verdict(higher, 0.87) == "not reproduced"
    lower = Claim("c", "s", "a loss", 0.05, lambda m: m["x"], higher=False, margin=0.03)
    assert verdict(lower, 0.04) == "reproduced" and verdict(lower, 0.07) == "partly"
    assert verdict(lower, 0.09) == "not reproduced"
    finding = Claim("c", "s", "a finding", None, lambda m: m["x"], finding=True)
    assert verdict(finding, 1.0) == "reproduced" and verdict(finding, 0.0) == "not reproduced"
    assert verdict(Claim("c", "s", "new", None, lambda m: m["x"]), 0.5) == "beyond the paper"


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
    assert table.count("\n|") == len(CLAIMS) + 1  # header rule + one line per claim


def test_every_claim_links_to_a_section_of_its_chapter():
    for claim in CLAIMS:
        text = (book_dir() / f"{claim.chapter}.md").read_text()
        assert re.search(rf"^\({re.escape(claim.section)}\)=$", text, re.M), \
            f"{claim.chapter}.md has no label ({claim.section})="


def test_a_chapter_without_full_results_is_named(tmp_path):
    shutil.copytree(FULL, tmp_path / "full")
    (tmp_path / "full" / "sense.json").unlink()
    with pytest.raises(FileNotFoundError, match="sense"):
        glance_rows(tmp_path / "full")
    with pytest.raises(FileNotFoundError, match="sense"):
        runs_markdown(tmp_path / "full")


def test_the_runs_table_has_a_row_per_chapter():
    table = runs_markdown()
    for name in ("sparse_ternary", "architecture_manifold", "sense", "car_racing", "robustness", "self_introspection"):
        assert f"{{doc}}`{name}`" in table
