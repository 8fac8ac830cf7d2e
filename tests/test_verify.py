import json

import pytest

from aann import build, verify
from aann.paths import full_results_dir
from aann.verify import Tolerance, compare, report, tolerance


def test_every_stored_metric_and_every_chapter_has_a_tolerance():
    assert set(verify.RULES) == set(build.chapters())
    for chapter in build.chapters():
        path = full_results_dir() / f"{chapter}.json"
        if path.is_file():
            for key in json.loads(path.read_text())["metrics"]:
                tolerance(chapter, key)  # raises for a key no rule covers


def test_a_key_without_a_rule_and_an_unknown_chapter_are_named():
    with pytest.raises(KeyError, match="no tolerance for sense metric 'brand/new'"):
        tolerance("sense", "brand/new")
    with pytest.raises(ValueError, match="unknown chapter 'cookbook'"):
        tolerance("cookbook", "x")


def test_tolerances_are_absolute_plus_relative_and_nan_only_matches_nan():
    t = Tolerance(0.01, 0.1, "test")
    assert t.allows(1.0, 1.11) and not t.allows(1.0, 1.12)
    assert t.allows(-1.0, -0.89) and not t.allows(-1.0, -0.88)
    assert Tolerance(0, 0, "exact").allows(3.0, 3.0) and not Tolerance(0, 0, "exact").allows(3.0, 3.0001)
    assert t.allows(float("nan"), float("nan")) and not t.allows(float("nan"), 1.0)


def test_budget_counts_and_findings_must_not_move_but_accuracies_may_by_their_tolerance():
    stored = {"n_seeds": 3.0, "mnist/90/test_acc_mean": 0.980, "vgg_cifar/finding/dense_robust": 1.0}
    assert not any(d.moved for d in compare("sparse_ternary", {**stored}, {**stored, "mnist/90/test_acc_mean": 0.985}))
    assert [d.key for d in compare("sparse_ternary", stored, {**stored, "n_seeds": 2.0}) if d.moved] == ["n_seeds"]
    flipped = compare("robustness", {"vgg_cifar/finding/dense_robust": 1.0}, {"vgg_cifar/finding/dense_robust": 0.0})
    assert [d.moved for d in flipped] == [True]


def test_a_metric_only_one_run_has_moved_and_the_report_lists_it():
    stored = {"n_seeds": 3.0, "mnist/90/test_acc_mean": 0.98}
    diffs = compare("sparse_ternary", stored, {"n_seeds": 3.0, "mnist/95/test_acc_mean": 0.97})
    moved = {d.key: d.row() for d in diffs if d.moved}
    assert set(moved) == {"mnist/90/test_acc_mean", "mnist/95/test_acc_mean"}
    assert moved["mnist/90/test_acc_mean"]["new"] == "missing"
    text = report("sparse_ternary", diffs)
    assert text.startswith("sparse_ternary: 2 of 3 metrics moved") and "missing" in text
    assert report("sparse_ternary", compare("sparse_ternary", stored, stored)) == (
        "sparse_ternary: all 2 metrics within their tolerances")
