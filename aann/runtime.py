"""Device choice, seeding and the profile switch shared by every chapter."""

from __future__ import annotations

import atexit
import hashlib
import os
import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["PROFILES", "default_device", "default_profile", "check_profile", "seed_everything",
           "derived_seed", "generator", "spawn_context", "worker_pool"]

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


_POOL: dict = {}  # "pool" and "size": the process's kept pool of workers, once started


def _single_threaded_worker():
    import signal

    torch.set_num_threads(1)  # one job per process: threads would only contend for the cores
    # an interrupt reaches the whole process group (a notebook's or a terminal's Ctrl-C): the
    # parent handles it (and terminates the pool); idle workers must not die of it
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(workers: int):
    """A pool of at least ``workers`` single-threaded spawned processes, started on first use and
    kept for later calls: each spawned process imports torch, gymnasium and Box2D (about 5 s on 2
    cores), which a chapter that drives a dozen batches of episodes would otherwise pay a dozen
    times. One pool per process: a call that asks for more workers than it has replaces it.

    An exception (or an interrupt) inside the ``with`` block terminates the pool, so that no job of
    the failed call runs on in it; the next call starts a fresh one. Read all results inside the
    block (a result iterator left unread leaves its jobs running ahead of the next call's). The
    workers keep the environment and working directory of their start; jobs must not use CUDA (a
    worker would hold its context for the rest of the process). Not for use from several threads
    at once."""
    if workers < 2:
        raise ValueError(f"a worker pool needs at least 2 workers, got {workers}; run one job in-process")
    if _POOL.get("size", 0) < workers:
        _close_pool()
        _POOL.update(pool=spawn_context().Pool(workers, initializer=_single_threaded_worker), size=workers)
    pool = _POOL["pool"]
    try:
        yield pool
    except BaseException:
        _close_pool()
        raise


@atexit.register
def _close_pool():
    pool = _POOL.pop("pool", None)
    _POOL.clear()
    if pool is not None:
        pool.terminate()
