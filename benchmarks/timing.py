"""Wall-clock timing shared by the benchmarks. GPU kernels run asynchronously, so every reading
waits for the device before the clock is read."""

from __future__ import annotations

import time

import torch


def sync(device) -> None:
    """Wait until ``device`` has finished the work queued so far (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """``fn()`` called once: ``(its result, seconds)``."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def timed_until(fn, min_seconds: float, device) -> tuple[int, float]:
    """``fn`` (returning how many items it processed) called until ``min_seconds`` have passed:
    ``(items, seconds)``."""
    done = 0
    sync(device)
    start = time.perf_counter()
    while True:
        done += fn()
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done, elapsed
