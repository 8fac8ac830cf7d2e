"""Execution time of every chapter in one profile, on one machine: the wall time each chapter's
last execution recorded in its results file, gathered into one file with the machine, profile and
commit it ran on. Run it after executing every chapter (a fresh clone's ``make test`` or
``python -m aann.build execute --profile quick``); a chapter not executed, or executed in another
profile, on another machine or from another commit, is an error rather than a mixed table.

    python benchmarks/bench_chapters.py [--from _build/results]

Writes _build/results/bench_chapters.json: ``<chapter>/wall_time_s`` and ``total/wall_time_s``.
Copied to ``results/bench/bench_chapters_<profile>_<machine>.json``, it is a column of the book's
table of execution times (``aann.bench_report.execution_times_markdown``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aann.build import chapters
from aann.paths import results_dir
from aann.results import read_results, versions


def gather(folder: Path) -> dict:
    runs = {name: read_results(name, folder) for name in chapters()}  # a missing file names itself
    for field in ("profile", "device", "commit"):
        seen = {name: run.get(field) for name, run in runs.items()}
        if len(set(seen.values())) != 1:
            raise ValueError(f"the results in {folder} differ in {field}: {seen}; execute every chapter in one run")
    untimed = [name for name, run in runs.items() if "wall_time_s" not in run]
    if untimed:
        raise ValueError(f"no wall time recorded for {untimed} in {folder}")
    first = next(iter(runs.values()))
    metrics = {f"{name}/wall_time_s": run["wall_time_s"] for name, run in runs.items()}
    metrics["total/wall_time_s"] = round(sum(metrics.values()), 1)
    return {"profile": first["profile"], "device": first["device"], "commit": first["commit"],
            "date": max(run.get("date", "") for run in runs.values()), "versions": versions(), "metrics": metrics}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="folder", type=Path, default=results_dir(),
                        help="where the chapters wrote their results (default: _build/results)")
    args = parser.parse_args(argv)
    payload = gather(args.folder)
    out = results_dir() / "bench_chapters.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"{payload['profile']} profile on {payload['device']}: {payload['metrics']['total/wall_time_s']:.0f} s "
          f"in all -> {out}")


if __name__ == "__main__":
    main()
