import json
import shutil

import pytest

from aann.bench_report import bench_markdown, bench_program, metrics_table
from aann.paths import project_root

BENCH = project_root() / "results" / "bench"


def test_every_committed_result_has_its_program_and_a_section():
    page = bench_markdown()
    for f in sorted(BENCH.glob("*.json")):
        assert bench_program(f).is_file()
        assert f"`results/bench/{f.name}`" in page


def test_metrics_table_puts_groups_in_rows_and_keeps_every_number():
    table = metrics_table({"fc/speedup": 4118.69, "fc/fast_per_s": 1380.18, "1.0/speedup": 15.67, "n_images": 10000.0})
    lines = table.splitlines()
    assert lines[0] == "| | fast_per_s | n_images | speedup |"
    assert "| fc | 1,380 |  | 4,119 |" in lines and "| 1.0 |  |  | 15.67 |" in lines and "| - |  | 10,000 |  |" in lines


def test_a_damaged_result_or_an_unknown_file_is_named(tmp_path):
    shutil.copy(BENCH / "bench_neighbours_cpu.json", tmp_path / "bench_neighbours_cpu.json")
    (tmp_path / "bench_pooling_cpu.json").write_text('{"device": ')
    with pytest.raises(ValueError, match="bench_pooling_cpu.json"):
        bench_markdown(tmp_path)
    (tmp_path / "bench_pooling_cpu.json").unlink()
    (tmp_path / "speed.json").write_text(json.dumps({"device": "cpu", "metrics": {}}))
    with pytest.raises(FileNotFoundError, match="speed.json"):
        bench_markdown(tmp_path)
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        bench_markdown(tmp_path / "empty")
