"""A model cache keyed by a hash of the configuration, so re-running the book does not retrain.

Entries are plain ``torch.save`` files holding a state dict and JSON-able metadata, read back with
``torch.load(..., weights_only=True)``: no pickled code is ever executed.

A damaged entry (a truncated file, a file that is not a torch archive, one written by another cache
version or for another configuration) is never an error: :func:`load` warns with
:class:`DamagedCacheEntryWarning`, naming the file and what is wrong with it, and answers as for a
missing entry, so the caller trains again and :func:`save` replaces the file.
"""

from __future__ import annotations

import collections
import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable

import torch

from . import store
from .paths import cache_dir

__all__ = ["CACHE_VERSION", "USAGE", "STORE_READ", "config_key", "cache_path", "DamagedCacheEntryWarning", "load", "save",
           "partial_path", "save_partial", "load_partial", "drop_partial", "state_fingerprint", "tensor_fingerprint"]

# Bump whenever training code changes what it produces, even by rounding: the key hashes the
# configuration, not the code. 2: the initial ternary scale is summed per output channel (7161650),
# which moves trained networks by float rounding.
CACHE_VERSION = 2

# What this process took from the cache and what it made ("networks read", "networks trained",
# "trainings resumed"; aann.robustness counts "sweeps read" and "sweeps made", aann.sense_checkpoints
# "searches read" and "searches resumed"): a chapter's provenance note says how much of its
# execution was reading earlier work. A read from the model store (aann.store) rather than the
# cache is counted under the key + STORE_READ ("networks read from the store").
USAGE: collections.Counter = collections.Counter()
STORE_READ = " from the store"


def config_key(config: dict) -> str:
    """A stable hash of a JSON-able configuration (key order does not matter)."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cache_path(config: dict) -> Path:
    return cache_dir() / f"{config_key(config)}.pt"


class DamagedCacheEntryWarning(UserWarning):
    """A cache entry could not be used; the model it held is trained again."""


def _damage(entry, config: dict) -> str | None:
    """What is wrong with a loaded entry, or None."""
    if not isinstance(entry, dict) or not {"state_dict", "config_json", "meta_json"} <= entry.keys():
        return "not a cache entry (no state_dict, config_json and meta_json)"
    # entries record their version since version 2; one without the field was written by version 2
    version = entry.get("cache_version", 2)
    if version != CACHE_VERSION:
        return f"written by cache version {version}, this is version {CACHE_VERSION}"
    if entry["config_json"] != json.dumps(config, sort_keys=True, default=str):
        return "it holds another configuration than the one it is named for"
    return None


def load(config: dict, counted_as: str = "networks read") -> tuple[dict, dict] | None:
    """``(state_dict, meta)`` for ``config``, or None when it was never saved or cannot be used
    (then a :class:`DamagedCacheEntryWarning` names the file and why). The cache is looked in
    first, then the model store; a hit adds one to ``USAGE[counted_as]`` (``counted_as +
    STORE_READ`` for the store)."""
    path = cache_path(config)
    stored = not path.is_file()
    if stored:
        path = store.find(path.name)  # a network committed with the book (models/), read-only
        if path is None:
            return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        problem = _damage(entry, config)
        if problem is None:
            meta = json.loads(entry["meta_json"])
            USAGE[counted_as + STORE_READ if stored else counted_as] += 1
            return entry["state_dict"], meta
    except Exception as err:  # truncated, not a torch archive, unpicklable, bad JSON: all the same here
        problem = f"{type(err).__name__}: {err}".splitlines()[0]
    where, then = (("model store", " into the model cache, whose entry is read from then on") if stored
                   else ("model cache", ", the new entry will replace the file"))
    warnings.warn(f"{where} entry {path} cannot be used ({problem}); training it again{then}",
                  DamagedCacheEntryWarning, stacklevel=2)
    return None


def save(config: dict, state_dict: dict, meta: dict | None = None, counted_as: str = "networks trained") -> Path:
    """Write the entry for ``config`` and add one to ``USAGE[counted_as]``."""
    path = cache_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "config_json": json.dumps(config, sort_keys=True, default=str),
        "meta_json": json.dumps(meta or {}),
        "cache_version": CACHE_VERSION,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(entry, tmp)
    tmp.replace(path)  # atomic: an interrupted run never leaves half an entry
    USAGE[counted_as] += 1
    return path


def memoized(config: dict, compute: Callable[[], tuple[dict, dict]], read: bool = True,
             write: bool = True) -> tuple[dict, dict]:
    """``(state_dict, meta)`` for ``config``: read from the cache, or made by ``compute()`` and
    saved. The trainers call this once each instead of reading and writing entries themselves;
    ``read=False`` always computes (and, with ``write``, replaces the entry)."""
    if read:
        hit = load(config)
        if hit is not None:
            return hit
    state, meta = compute()
    if write:
        save(config, state, meta)
    return state, meta


def partial_path(config: dict) -> Path:
    """Where an unfinished training of ``config`` keeps its last finished epoch."""
    return cache_dir() / f"{config_key(config)}.partial.pt"


def save_partial(config: dict, state: dict) -> Path:
    """Save the state of an unfinished training (tensors, numbers, lists, dicts), atomically, so
    that a stopped run resumes from its last finished epoch instead of from the start."""
    path = partial_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config_json": json.dumps(config, sort_keys=True, default=str), "cache_version": CACHE_VERSION,
                "state": state}, tmp)
    tmp.replace(path)
    return path


def load_partial(config: dict) -> dict | None:
    """The state :func:`save_partial` left for ``config``, or None; one that cannot be used is
    named in a :class:`DamagedCacheEntryWarning` and the training starts from the beginning."""
    path = partial_path(config)
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if entry.get("cache_version") != CACHE_VERSION:
            problem = f"written by cache version {entry.get('cache_version')}, this is version {CACHE_VERSION}"
        elif entry.get("config_json") != json.dumps(config, sort_keys=True, default=str):
            problem = "it holds another configuration than the one it is named for"
        else:
            USAGE["trainings resumed"] += 1
            return entry["state"]
    except Exception as err:
        problem = f"{type(err).__name__}: {err}".splitlines()[0]
    warnings.warn(f"unfinished training {path} cannot be resumed ({problem}); training from the start",
                  DamagedCacheEntryWarning, stacklevel=2)
    return None


def drop_partial(config: dict) -> None:
    partial_path(config).unlink(missing_ok=True)


def state_fingerprint(model: torch.nn.Module) -> str:
    """An exact content hash of a model's state dict (every name and every byte), for keying work
    that starts from a trained network."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def tensor_fingerprint(tensor) -> str:
    """A cheap content hash of a tensor (shape and a strided sample of at most ~100,000 entries),
    for keying models trained on derived data such as hidden activations."""
    h = hashlib.sha256(str(tuple(tensor.shape)).encode())
    h.update(tensor.detach().flatten()[:: max(1, tensor.numel() // 100_000)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
