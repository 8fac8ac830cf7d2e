"""Device choice, seeding and the profile switch shared by every chapter."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

__all__ = ["PROFILES", "default_device", "default_profile", "check_profile", "seed_everything",
           "derived_seed", "generator", "spawn_context"]

PROFILES = ("quick", "full")


def default_device() -> torch.device:
    """CUDA when present, else the CPU (``$AANN_DEVICE`` overrides)."""
    env = os.environ.get("AANN_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_profile() -> str:
    """``$AANN_PROFILE``, else ``full`` on a GPU and ``quick`` on a CPU."""
    return check_profile(os.environ.get("AANN_PROFILE") or ("full" if torch.cuda.is_available() else "quick"))


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seed(*parts, bits: int = 32) -> int:
    """A seed that depends only on ``parts`` (a base seed and tags saying where it is used: an
    epoch, a search step, a fault), never on what ran before: the leading ``bits`` bits of the
    SHA-256 of ``repr(parts)``. Every seeded draw of the package derives its seed here."""
    if bits % 4 or not 4 <= bits <= 256:
        raise ValueError(f"bits must be a multiple of 4 in [4, 256], got {bits}")
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:bits // 4], 16)


def generator(seed: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def spawn_context():
    """multiprocessing's ``spawn`` context, for worker processes that may use CUDA (a forked child
    cannot once the parent has touched it). Spawned workers re-import the main module; a script
    read from stdin (``python - <<EOF``) cannot be re-imported and its workers die at start with a
    bare "terminated abruptly", so say so here instead."""
    import multiprocessing

    import __main__

    main = getattr(__main__, "__file__", None)
    if main is not None and not os.path.exists(main):
        raise RuntimeError(f"worker processes are started with spawn, which re-imports the main module, and "
                           f"{main!r} is not a file it can import: run this code from a file, a notebook or "
                           f"`python -c`, or ask for one worker")
    return multiprocessing.get_context("spawn")
