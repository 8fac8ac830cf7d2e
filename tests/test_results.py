import json
import math
import re
from pathlib import Path

import pytest

from aann.experiments import read_experiment
from aann.results import check_curve, read_results, under, write_results


def test_roundtrip_format(tmp_path):
    path = write_results("demo", {"a/b": 0.5, "n": 3}, profile="quick", device="cpu", wall_time_s=1.23,
                         out_dir=tmp_path)
    out = json.loads(path.read_text())
    assert set(out) == {"profile", "device", "versions", "commit", "date", "metrics", "wall_time_s"}
    in_git = (Path(__file__).resolve().parents[1] / ".git").exists()
    assert re.fullmatch(r"[0-9a-f]{10}( \+local changes)?" if in_git else "unknown", out["commit"]), out["commit"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", out["date"])
    assert out["metrics"] == {"a/b": 0.5, "n": 3.0}
    assert {"torch", "python", "aann"} <= set(out["versions"])
    assert read_results("demo", tmp_path) == out
    # a CPU run names the kernels it ran on: other kernels round the same seed's training differently
    assert re.fullmatch(r"cpu: .+, \S+ kernels, \d+ threads", out["device"]), out["device"]


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": math.inf}, {"": 1.0}, {3: 1.0}])
def test_rejects_non_finite_or_unnamed(tmp_path, bad):
    with pytest.raises(ValueError):
        write_results("demo", bad, profile="quick", device="cpu", out_dir=tmp_path)


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="execute chapter 'nope'"):
        read_results("nope", tmp_path)


def test_an_experiment_reads_as_a_curve(tmp_path, monkeypatch):
    import argparse

    from aann.experiments import write_experiment

    monkeypatch.setenv("AANN_ROOT", str(tmp_path))
    assert read_experiment("demo_check") is None  # not in this checkout
    metrics = {"steps": 200, "final/test_acc": 0.6, "curve/200/val_acc": 0.7, "curve/200/test_acc": 0.6,
               "curve/0/val_acc": 0.1, "curve/0/test_acc": 0.12, "curve/0/moves/fc1.0": 0, "curve/200/moves/fc1.0": 9}
    write_experiment("demo_check", metrics, argparse.Namespace(quick=False, out=tmp_path / "results" / "experiments"), "cpu")
    curve = check_curve(read_experiment("demo_check"))
    assert curve["step"].tolist() == [0, 200]
    assert curve["val_acc"].tolist() == [0.1, 0.7] and curve["test_acc"].tolist() == [0.12, 0.6]
    assert curve["moves/fc1.0"].tolist() == [0, 9]
    with pytest.raises(ValueError, match="no curve"):
        check_curve({"steps": 3})
    with pytest.raises(ValueError, match="curve/<step>/<field>"):
        check_curve({"curve/last/val_acc": 0.5})


def test_under_puts_every_key_under_a_prefix():
    assert under("random80/mnist", {"val_acc": 0.5, "evaluations": 7}) == {"random80/mnist/val_acc": 0.5,
                                                                         "random80/mnist/evaluations": 7}
    assert under("x", {}) == {}


@pytest.mark.parametrize("metrics, message", [({"a": None}, "metric 'a' is None"),
                                              ({"a": float("nan")}, "metric 'a' is nan, not a finite number"),
                                              ({"": 1.0}, "metric keys must be non-empty strings")])
def test_a_metric_that_is_not_a_finite_number_is_named(tmp_path, metrics, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write_results("demo", metrics, profile="quick", device="cpu", out_dir=tmp_path)
    assert not (tmp_path / "demo.json").exists()


def test_durations_read_as_seconds_minutes_or_hours():
    from aann.results import format_duration

    assert [format_duration(s) for s in (48.4, 750, 3 * 3600 + 1440)] == ["48 s", "12.5 min", "3.4 h"]


def test_the_provenance_note_says_how_long_and_where_the_full_profile_leaves_the_papers_scale(tmp_path, monkeypatch):
    """The note is glued when the results are written, with the wall time; a full-profile page lists
    what differs from the paper (aann.profiles.SCALE_NOTES), a quick page says it is small-budget."""
    import torch

    from aann.chapter import Chapter
    from aann.profiles import SCALE_NOTES

    monkeypatch.setenv("AANN_RESULTS", str(tmp_path))
    full = Chapter("robustness", "full", torch.device("cpu"))
    full.write_results({"x": 1.0})
    note = full.glued["provenance"]
    assert note.startswith("**This page was executed with the full profile**") and re.search(r", in \d+ s\.", note)
    assert note.endswith(SCALE_NOTES["robustness"])
    assert "differs" not in Chapter("sparse_ternary", "full", torch.device("cpu")).provenance(10.0)
    assert "small" in Chapter("sparse_ternary", "quick", torch.device("cpu")).provenance(10.0)


def test_the_provenance_note_says_what_the_execution_read_from_earlier_runs(monkeypatch):
    import torch

    from aann import cache
    from aann.chapter import Chapter

    monkeypatch.setattr(cache, "USAGE", cache.USAGE.__class__({"networks read": 5}))
    chapter = Chapter("sparse_ternary", "full", torch.device("cpu"))
    assert "reading" not in chapter.provenance(60.0)  # what came before the chapter started is not its own
    cache.USAGE.update({"networks read": 93, "networks trained": 3, "searches read": 1})
    assert chapter.provenance(60.0).endswith(
        ", in 1.0 min (reading 93 trained networks and 1 finished search from the model cache; training 3).")
    cache.USAGE.update({"sweeps read": 16, "trainings resumed": 1})
    assert chapter.provenance(60.0).endswith(
        ", in 1.0 min (reading 93 trained networks, 16 finished sweeps and 1 finished search from the model cache; "
        "training 3; resuming 1 training from the last finished epoch).")
    # what came with the book (the model store) is told apart from what earlier runs left in the cache
    cache.USAGE.update({"networks read" + cache.STORE_READ: 4, "searches read" + cache.STORE_READ: 2})
    assert chapter.provenance(60.0).endswith(
        ", in 1.0 min (reading 4 trained networks and 2 finished searches from the model store; "
        "reading 93 trained networks, 16 finished sweeps and 1 finished search from the model cache; "
        "training 3; resuming 1 training from the last finished epoch).")


def test_a_results_file_says_what_the_run_read_from_earlier_runs(tmp_path, monkeypatch):
    import shutil

    from aann.paths import full_results_dir
    from aann.summary import runs_markdown

    write_results("sense", {"a": 1.0}, profile="full", device="cpu", wall_time_s=90.0, out_dir=tmp_path / "full",
                  reused="reading 1 finished search from the model cache")
    assert read_results("sense", tmp_path / "full")["reused"] == "reading 1 finished search from the model cache"
    write_results("robustness", {"a": 1.0}, profile="full", device="cpu", out_dir=tmp_path / "full")
    assert "reused" not in read_results("robustness", tmp_path / "full")  # nothing read: no field
    for other in full_results_dir().glob("*.json"):
        if not (tmp_path / "full" / other.name).exists():
            shutil.copy(other, tmp_path / "full")
    assert "| 1.5 min (reading 1 finished search from the model cache) |" in runs_markdown(tmp_path / "full")
