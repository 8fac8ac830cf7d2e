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


def _chapter_runs(folder, profile="quick", device="cpu: test", commit="abc", skip=()):
    from aann.build import chapters
    from aann.results import write_results

    for i, name in enumerate(chapters()):
        if name not in skip:
            write_results(name, {"x": 1.0}, profile, "cpu", wall_time_s=60.0 * (i + 1), out_dir=folder)
            run = json.loads((folder / f"{name}.json").read_text())
            (folder / f"{name}.json").write_text(json.dumps({**run, "device": device, "commit": commit}))


def _bench_chapters():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_chapters", project_root() / "benchmarks" / "bench_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_execution_times_have_a_column_per_profile_and_machine_and_the_stored_full_runs(tmp_path):
    from aann.bench_report import execution_times_markdown
    from aann.build import chapters

    runs, bench, full = tmp_path / "runs", tmp_path / "bench", tmp_path / "full"
    bench.mkdir()
    _chapter_runs(runs)
    (bench / "bench_chapters_quick_cpu.json").write_text(json.dumps(_bench_chapters().gather(runs)))
    _chapter_runs(full, profile="full", device="cuda: H100", skip=chapters()[1:])
    table = execution_times_markdown(bench, full).splitlines()
    assert table[0] == "| chapter | quick profile, cpu: test | full profile (machine) |"
    first, second = chapters()[:2]
    assert f"| {first} | 1.0 min | 1.0 min (cuda: H100) |" in table
    assert f"| {second} | 2.0 min | not stored |" in table
    total = sum(60 * (i + 1) for i in range(len(chapters()))) / 60
    assert table[-1] == f"| all chapters | {total:.1f} min |  |"


def test_chapter_times_refuse_a_mixed_or_incomplete_set_of_runs(tmp_path):
    from aann.build import chapters

    gather = _bench_chapters().gather
    _chapter_runs(tmp_path, skip=chapters()[-1:])
    with pytest.raises(FileNotFoundError, match=f"{chapters()[-1]}.json does not exist"):
        gather(tmp_path)
    _chapter_runs(tmp_path)
    assert gather(tmp_path)["profile"] == "quick"
    run = json.loads((tmp_path / f"{chapters()[0]}.json").read_text())
    (tmp_path / f"{chapters()[0]}.json").write_text(json.dumps({**run, "profile": "full"}))
    with pytest.raises(ValueError, match="differ in profile"):
        gather(tmp_path)


def test_execution_times_without_a_quick_measurement_keep_their_columns(tmp_path):
    from aann.bench_report import execution_times_markdown
    from aann.build import chapters

    _chapter_runs(tmp_path / "full", profile="full", device="cuda: H100")
    table = execution_times_markdown(tmp_path, tmp_path / "full").splitlines()
    assert table[0] == "| chapter | full profile (machine) |"
    assert table[2] == f"| {chapters()[0]} | 1.0 min (cuda: H100) |"
    assert all(line.count("|") == 3 for line in table)
