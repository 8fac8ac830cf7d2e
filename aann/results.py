"""Each chapter's key numbers, written to ``_build/results/<chapter>.json``.

Format: ``{"profile", "device", "versions", "commit", "date", "metrics": {flat key: number},
"wall_time_s"?, "reused"?}`` (``reused``: what the run read from earlier runs instead of computing
it, in words, e.g. "reading 96 trained networks from the model cache").
Tests, the README and ``results/full/`` read the same files.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import subprocess
from pathlib import Path

from .paths import project_root, results_dir

__all__ = ["versions", "source_commit", "device_description", "under", "write_results", "read_results", "check_curve",
           "format_duration"]


def versions() -> dict[str, str]:
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    from . import __version__

    out["aann"] = __version__
    return out


def source_commit() -> str:
    """The git commit of the code that runs (short hash), with ``+local changes`` when the working
    tree differs from it; ``unknown`` outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", str(project_root()), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=10", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" +local changes" if dirty else "")


def device_description(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    # the vector kernels PyTorch dispatched to (AVX2, AVX512, ...): the same seed gives the same
    # numbers on the same machine, but another CPU may run other kernels that round differently
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "unknown")()
    return f"cpu: {platform.processor() or platform.machine()}, {capability} kernels, {torch.get_num_threads()} threads"


def under(prefix: str, metrics: dict) -> dict:
    """``metrics`` with every key put under ``prefix`` (``under("a/b", {"x": 1}) == {"a/b/x": 1}``),
    so that a result object's keys are written once, where it makes them."""
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def write_results(chapter: str, metrics: dict, profile: str, device, wall_time_s: float | None = None,
                  out_dir: Path | None = None, reused: str = "") -> Path:
    """Validate and write the results file; return its path."""
    clean = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric keys must be non-empty strings, got {key!r}")
        if value is None:
            raise ValueError(f"metric {key!r} is None: every metric must be a finite number")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {key!r} is {value}, not a finite number")
        clean[key] = value
    payload = {"profile": profile, "device": device_description(device), "versions": versions(),
               "commit": source_commit(), "date": datetime.date.today().isoformat(), "metrics": clean}
    if wall_time_s is not None:
        payload["wall_time_s"] = round(float(wall_time_s), 1)
    if reused:
        payload["reused"] = reused
    out_dir = Path(out_dir) if out_dir else results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{chapter}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_results(chapter: str, out_dir: Path | None = None) -> dict:
    path = (Path(out_dir) if out_dir else results_dir()) / f"{chapter}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: execute chapter {chapter!r} first")
    return json.loads(path.read_text())


def check_curve(metrics: dict):
    """A search check's ``curve/<step>/<field>`` keys as a table: one row per recorded step, one
    column per field (``val_acc``, ``test_acc``, ``evaluations``, ``moves/<layer>``)."""
    import pandas as pd

    rows: dict[int, dict] = {}
    for key, value in metrics.items():
        head, _, rest = key.partition("/")
        if head != "curve":
            continue
        step, _, field = rest.partition("/")
        if not step.isdigit() or not field:
            raise ValueError(f"curve key {key!r} is not of the form curve/<step>/<field>")
        rows.setdefault(int(step), {})[field] = value
    if not rows:
        raise ValueError("these metrics have no curve/<step>/<field> keys")
    return pd.DataFrame.from_dict(rows, orient="index").sort_index().rename_axis("step").reset_index()


def format_duration(seconds: float) -> str:
    """A wall time for a reader: ``"48 s"``, ``"12.5 min"``, ``"3.4 h"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
