import json
import math

import pytest

from aann.results import read_results, write_results


def test_roundtrip_format(tmp_path):
    path = write_results("demo", {"a/b": 0.5, "n": 3}, profile="quick", device="cpu", wall_time_s=1.23,
                         out_dir=tmp_path)
    out = json.loads(path.read_text())
    assert set(out) == {"profile", "device", "versions", "metrics", "wall_time_s"}
    assert out["metrics"] == {"a/b": 0.5, "n": 3.0}
    assert {"torch", "python", "aann"} <= set(out["versions"])
    assert read_results("demo", tmp_path) == out


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": math.inf}, {"": 1.0}, {3: 1.0}])
def test_rejects_non_finite_or_unnamed(tmp_path, bad):
    with pytest.raises(ValueError):
        write_results("demo", bad, profile="quick", device="cpu", out_dir=tmp_path)


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="execute chapter 'nope'"):
        read_results("nope", tmp_path)
