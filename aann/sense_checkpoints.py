"""SENSE checkpoints: the state of a search on disk, so that a stopped search resumes on the same
trajectory and a finished one is read back instead of rerun.

A checkpoint holds the search's configuration, a fingerprint of its start (the initial network's
state and the selection split) and the state of ``SenseResult`` (accepted swaps, counters,
history). It is found first where ``checkpoint_path`` puts it, in the model cache, then in the
read-only model store (``aann.store``: finished searches committed with the book).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import cache, store
from .cache import state_fingerprint
from .data import Split
from .paths import cache_dir

if TYPE_CHECKING:
    from .sense import SenseConfig, SenseResult

__all__ = ["STATE_FIELDS", "config_key", "save_checkpoint", "load_checkpoint", "checkpoint_path"]

# The fields of SenseResult that a checkpoint holds (config and initial network are its key).
STATE_FIELDS = ("path", "member_val", "history", "neighbourhoods", "step", "block", "in_block")


def config_key(config: SenseConfig) -> dict:
    """The configuration as a checkpoint records and compares it: a field added after checkpoints
    were written is left out at its default, so those checkpoints (and their file names) still
    belong to the same searches."""
    return {k: v for k, v in asdict(config).items() if not (k == "swaps_per_step" and v == 1)}


def save_checkpoint(path: Path, result: SenseResult, fingerprint: str) -> None:
    state = {k: getattr(result, k) for k in STATE_FIELDS}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config_key(result.config), "initial": fingerprint, "state": state}, tmp)
    os.replace(tmp, path)  # atomic: a search killed while writing keeps its previous checkpoint


def load_checkpoint(path: Path, config: SenseConfig, fingerprint: str, shorter: bool = False) -> dict | None:
    """The state saved at ``path`` (None if there is no file). ``shorter``: the file may hold the
    same search run to fewer steps (see ``aann.sense.sense``'s ``extends``)."""
    stored = not path.exists()
    if stored:
        path = store.find(path.name)  # a finished search committed with the book, read-only
        if path is None:
            return None
    try:
        saved = torch.load(path, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"cannot read the SENSE checkpoint {path} ({e}); delete it to start afresh") from e
    theirs, ours = dict(saved["config"]), config_key(config)
    if shorter:
        if config.temperature is not None:
            raise ValueError("an annealing search cannot extend a shorter one: its temperature schedule "
                             "depends on the total number of steps")
        if theirs.get("steps", 0) > config.steps:
            raise ValueError(f"the checkpoint {path} ran {theirs['steps']} steps, more than the {config.steps} "
                             "of this search: it can only extend a shorter one")
        theirs["steps"] = ours["steps"]
    if saved["initial"] != fingerprint or theirs != ours:
        raise ValueError(f"the checkpoint {path} belongs to another search (other initial network or "
                         "configuration); delete it or pass another checkpoint path")
    history = saved["state"].get("history") or {}
    if "moved" in history and "swaps" not in history:  # written before composite moves: one swap a move
        history["swaps"] = [int(m) for m in history["moved"]]
    read = "searches read" if saved["state"]["step"] >= config.steps else "searches resumed"
    cache.USAGE[read + cache.STORE_READ if stored else read] += 1
    return saved["state"]


def checkpoint_path(name: str, model: nn.Module, select: Split, config: SenseConfig) -> Path:
    """A checkpoint file in the model cache, named for the search and keyed by its start, its
    selection split and its configuration: a rerun resumes (or finds the search done), a changed
    search starts afresh in another file."""
    what = (state_fingerprint(model), select.fingerprint(), config_key(config))
    if config.temperature is not None:  # annealing has proposed at random since 54200b6: older checkpoints are not resumed
        what += ("metropolis",)
    key = hashlib.sha256(repr(what).encode()).hexdigest()[:12]
    folder = cache_dir() / "sense"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{key}.pt"
