"""The model store: trained networks and finished search checkpoints committed with the book.

Some results cost hours to recompute (a p-SIREN sweep on a CPU, a SENSE search of thousands of
steps). Their files live in ``models/`` with plain names, each listed in ``models/MANIFEST.json``
with its sha256, its size, what made it (the configuration) and the command that makes it again.
The model cache (``aann.cache``) and SENSE's checkpoints (``aann.sense``) look here, read-only,
for a file of the name they would write before they train or search: a reader runs the
paper-scale chapters without retraining. Nothing else binary is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .paths import project_root

__all__ = ["store_dir", "manifest", "find", "sha256", "add"]


def store_dir() -> Path:
    """``$AANN_STORE``, else the repository's ``models/``."""
    env = os.environ.get("AANN_STORE")
    return Path(env) if env else project_root() / "models"


def manifest() -> dict:
    """``{file name: {"sha256", "bytes", "kind", "config", "command"}}`` ({} without a store)."""
    path = store_dir() / "MANIFEST.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it from git") from err


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def find(name: str) -> Path | None:
    """The stored file called ``name``, if the manifest lists it and it is there."""
    if name not in manifest():
        return None
    path = store_dir() / name
    return path if path.is_file() else None


def add(path: Path, kind: str, config: dict, command: str) -> Path:
    """Copy ``path`` into the store under its own name and list it in the manifest (for the
    maintainers: committing a file is a decision, see the module's docstring)."""
    import shutil

    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    entries = manifest()
    entries[path.name] = {"sha256": sha256(target), "bytes": target.stat().st_size, "kind": kind,
                          "config": config, "command": command}
    (folder / "MANIFEST.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return target
