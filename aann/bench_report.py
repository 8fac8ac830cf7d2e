"""The benchmark appendix: every committed benchmark result (``results/bench/*.json``, written by
the programs in ``benchmarks/``) as a section with the program's description, the machine it ran
on and its numbers in a table. Generated when the site is built, so the page shows exactly what the
files hold."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

from .paths import project_root
from .results import format_duration

__all__ = ["bench_program", "metrics_table", "bench_markdown", "execution_times_markdown"]


def bench_program(result: Path) -> Path:
    """The program that writes a result file: ``bench_neighbours_h100.json`` and
    ``bench_pooling_cpu_2threads.json`` come from ``benchmarks/bench_neighbours.py`` and
    ``benchmarks/bench_pooling.py`` (the longest program name that the file name starts with)."""
    programs = sorted((project_root() / "benchmarks").glob("bench_*.py"), key=lambda p: -len(p.stem))
    for program in programs:
        if result.stem == program.stem or result.stem.startswith(program.stem + "_"):
            return program
    raise FileNotFoundError(f"no program in benchmarks/ writes {result.name} (its name should start with one's)")


def _summary(program: Path) -> str:
    """The first paragraph of the program's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(program.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _number(v: float) -> str:
    """Four significant digits, thousands separated, no exponent below a billion."""
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e9:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}" if abs(v) < 1e9 else f"{v:.3e}"
    return f"{v:.4g}"


def metrics_table(metrics: dict) -> str:
    """Flat ``group/what`` keys as a Markdown table: a row per group, a column per ``what`` (keys
    without a group go in a row of their own, "-")."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        group, _, what = key.rpartition("/")
        rows.setdefault(group or "-", {})[what] = value
    columns = sorted({c for r in rows.values() for c in r})
    lines = ["| | " + " | ".join(columns) + " |", "| --- " * (len(columns) + 1) + "|"]
    for group, r in rows.items():
        lines.append(f"| {group} | " + " | ".join(_number(r[c]) if c in r else "" for c in columns) + " |")
    return "\n".join(lines)


def bench_markdown(folder: Path | None = None) -> str:
    """The appendix's body: one section per result file, grouped by program."""
    folder = Path(folder) if folder else project_root() / "results" / "bench"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no benchmark results (*.json)")
    out, seen = [], set()
    for program, f in sorted((bench_program(f), f) for f in files):  # each program's files together
        if program not in seen:
            seen.add(program)
            out.append(f"## `benchmarks/{program.name}`\n\n{_summary(program)}\n")
        try:
            run = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f} is not valid JSON ({e})") from e
        versions = ", ".join(f"{k} {v}" for k, v in sorted(run.get("versions", {}).items()))
        title = re.sub(r"^_", "", f.stem[len(program.stem):]) or "this machine"
        out.append(f"### {title}\n\n`results/bench/{f.name}`: {run['device']}; {versions}.\n\n"
                   f"{metrics_table(run['metrics'])}\n")
    return "\n".join(out)


def execution_times_markdown(bench_folder: Path | None = None, full_folder: Path | None = None) -> str:
    """A table of each chapter's wall time per profile: a column per ``bench_chapters_*.json`` (one
    profile on one machine, ``benchmarks/bench_chapters.py``) and one for the stored full-profile
    runs (``results/full/<chapter>.json``, each with the machine it ran on and what it read from
    earlier runs instead of computing it)."""
    from .build import chapters
    from .paths import full_results_dir

    bench_folder = Path(bench_folder) if bench_folder else project_root() / "results" / "bench"
    full_folder = Path(full_folder) if full_folder else full_results_dir()
    columns = {}
    for f in sorted(bench_folder.glob("bench_chapters_*.json")):
        run = json.loads(f.read_text())
        columns[f"{run['profile']} profile, {run['device']}"] = {
            k.removesuffix("/wall_time_s"): v for k, v in run["metrics"].items()}
    full = {}
    for name in chapters():
        path = full_folder / f"{name}.json"
        if path.is_file():
            run = json.loads(path.read_text())
            if "wall_time_s" in run:
                full[name] = f"{format_duration(run['wall_time_s'])} ({'; '.join(filter(None, [run['device'], run.get('reused')]))})"
    header = ["chapter", *columns, "full profile (machine)"]
    lines = ["| " + " | ".join(header) + " |", "| --- " * len(header) + "|"]
    rows = [[name, *(format_duration(c[name]) if name in c else "" for c in columns.values()), full.get(name, "not stored")]
            for name in chapters()]
    if columns:
        rows.append(["all chapters", *(format_duration(c["total"]) if "total" in c else "" for c in columns.values()), ""])
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
