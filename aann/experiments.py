"""Experiments outside the chapters: programs in ``experiments/``, each writing one JSON file.

An experiment is a run too long for a chapter (hours on a CPU) whose result a chapter quotes. Its
program (``experiments/<name>.py``) takes its budgets from ``aann.profiles``, runs with the
defaults the book quotes, or with ``--quick`` in seconds (pytest runs every program so), and writes
``results/experiments/<name>.json``:

``{"name", "command", "device", "versions", "date", "quick", "metrics": {flat key: number}}``

Curves are flat metrics ``curve/<step>/<field>`` (:func:`aann.results.check_curve` tabulates them).
Chapters read the files with :func:`read_experiment`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
from pathlib import Path

from .paths import project_root
from .results import device_description, versions

__all__ = ["experiments_dir", "parser", "write_experiment", "read_experiment"]


def experiments_dir() -> Path:
    """Where the book's experiment results are committed: ``results/experiments``."""
    return project_root() / "results" / "experiments"


def parser(description: str) -> argparse.ArgumentParser:
    """An experiment's command line: ``--quick`` (seconds, for the tests), ``--device``, ``--out``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run in seconds (what the tests run)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the JSON (default: results/experiments, or _build/experiments with --quick)")
    return p


def write_experiment(name: str, metrics: dict, args: argparse.Namespace, device) -> Path:
    """Validate the metrics and write ``<out>/<name>.json``; return its path."""
    clean = {}
    for key, value in metrics.items():
        value = float(value)
        if not isinstance(key, str) or not key or not math.isfinite(value):
            raise ValueError(f"metric {key!r} = {value}: keys must be non-empty strings, values finite numbers")
        clean[key] = value
    out = args.out or (project_root() / "_build" / "experiments" if args.quick else experiments_dir())
    out.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "command": " ".join(["python", *map(shlex.quote, [_program(), *_arguments()])]),
               "device": device_description(device), "versions": versions(),
               "date": datetime.date.today().isoformat(), "quick": bool(args.quick), "metrics": clean}
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def _arguments() -> list[str]:
    """The command line's arguments less ``--out``: where the file was written is not part of the
    experiment (and a committed file names no folder of the machine that ran it)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            args.append(arg)
    return args


def _program() -> str:
    main = Path(sys.argv[0]).resolve()
    try:
        return str(main.relative_to(project_root()))
    except ValueError:
        return main.name


def read_experiment(name: str) -> dict | None:
    """The metrics of the committed experiment ``name`` (``results/experiments/<name>.json``), or
    None where this checkout lacks it."""
    path = experiments_dir() / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["metrics"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path} is not an experiment's results file ({err}); restore it from git") from err
