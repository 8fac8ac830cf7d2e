"""Imitation data for the car net: the 3-class track expert's frames and decisions, one compressed
file per track, split by track so that no track leaks from training into validation or test.

Tracks are gymnasium seeds. Each split draws from its own range (train 10,000+, validation 20,000+,
test 30,000+; closed-loop evaluation uses 40,000+ and the expert was tuned on 0-11), so a larger
profile only adds tracks. Files live under ``data/car_racing/<config>/track_<seed>.npz`` with a
manifest of md5 sums: generation shows progress, can be interrupted and resumed (finished tracks are
kept, a half-written one never is), and a file whose md5 differs from the manifest is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .car_racing import MAX_STEPS, ExpertDriver, run_episode, to_gray
from .data import CorruptDataError, Split, data_root, md5

__all__ = ["SPLIT_SEED_BASE", "FORMAT_VERSION", "DemoConfig", "split_seeds", "generate", "load_tracks",
           "frames_split", "load_demonstrations", "DemonstrationSplits"]

SPLIT_SEED_BASE = {"train": 10_000, "val": 20_000, "test": 30_000, "drive": 40_000}
# bump when the expert, the class mapping or the file layout changes (2: classes from the damped aim)
FORMAT_VERSION = 2


@dataclass(frozen=True)
class DemoConfig:
    steps: int = MAX_STEPS  # frames per track (the episode may end sooner, with the lap)
    noise: float = 0.1  # probability of executing a random class (DART-style perturbation)

    def __post_init__(self):
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be in [1, {MAX_STEPS}], got {self.steps}")
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")

    def folder(self) -> Path:
        tag = hashlib.sha256(json.dumps({**asdict(self), "v": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()[:10]
        return data_root() / "car_racing" / f"steps{self.steps}_noise{self.noise:g}_{tag}"


def split_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` track seeds of ``split`` (train, val, test or drive)."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_SEED_BASE)}")
    if n < 0:
        raise ValueError(f"the number of tracks must be >= 0, got {n}")
    return [SPLIT_SEED_BASE[split] + i for i in range(n)]


def _manifest_path(folder: Path) -> Path:
    return folder / "manifest.json"


def _read_manifest(folder: Path) -> dict:
    path = _manifest_path(folder)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptDataError(f"{path} is not valid JSON ({e}); delete the folder {folder} to regenerate") from e


def _record_track(seed: int, config: DemoConfig) -> tuple[int, dict, dict]:
    ep = run_episode(ExpertDriver(classes=True), seed, config.steps, record=True, noise=config.noise,
                     noise_seed=seed)
    arrays = {"frames": np.stack([to_gray(f) for f in ep.frames]), "labels": ep.labels,
              "noisy": ep.noisy if ep.noisy is not None else np.zeros(len(ep.labels), bool)}
    return seed, arrays, {"return": ep.total_return, "steps": ep.steps, "tiles_visited": ep.tiles_visited}


def generate(seeds, config: DemoConfig = DemoConfig(), workers: int | None = None, progress: bool = True) -> Path:
    """Record the expert on every track in ``seeds`` that is not on disk yet; return the folder.

    Tracks run in ``workers`` processes (default: the CPU count). Each file is written to a temporary
    name and renamed, and the manifest is updated after each track, so an interruption loses at most
    the tracks in flight.
    """
    from tqdm import tqdm

    folder = config.folder()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder)
    todo = [int(s) for s in seeds if str(int(s)) not in manifest or not (folder / f"track_{int(s)}.npz").is_file()]
    if not todo:
        return folder
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=len(todo), desc=f"expert demonstrations ({workers} processes)", unit="track",
               disable=not progress, mininterval=5)

    def store(seed, arrays, info):
        path = folder / f"track_{seed}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        manifest[str(seed)] = {**info, "md5": md5(path), "frames": int(len(arrays["labels"]))}
        tmp_manifest = _manifest_path(folder).with_suffix(".tmp")
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp_manifest, _manifest_path(folder))
        bar.update(1)

    if workers == 1:
        for s in todo:
            store(*_record_track(s, config))
    else:
        from functools import partial

        from .runtime import worker_pool

        with worker_pool(workers) as pool:
            for result in pool.imap_unordered(partial(_record_track, config=config), todo):
                store(*result)
    bar.close()
    return folder


def load_tracks(seeds, config: DemoConfig = DemoConfig()) -> tuple[Split, dict]:
    """Frames and labels of ``seeds`` (already generated) as one ``Split`` (N x 1 x 96 x 96 in [0, 1]),
    and the manifest entries. A missing or corrupted file raises with its path."""
    folder = config.folder()
    manifest = _read_manifest(folder)
    xs, ys, info = [], [], {}
    for s in seeds:
        path = folder / f"track_{int(s)}.npz"
        entry = manifest.get(str(int(s)))
        if entry is None or not path.is_file():
            raise FileNotFoundError(f"{path} has not been generated: call aann.demonstrations.generate first")
        if md5(path) != entry["md5"]:
            raise CorruptDataError(f"{path} does not match its md5 in {_manifest_path(folder)}; delete it to regenerate")
        try:
            with np.load(path) as z:
                frames, labels = z["frames"], z["labels"]
        except Exception as e:  # md5 matched but the archive is unreadable: written by other code
            raise CorruptDataError(f"{path} cannot be read ({e}); delete it to regenerate") from e
        if frames.shape != (len(labels), 96, 96) or len(labels) != entry["frames"]:
            raise CorruptDataError(f"{path} holds {frames.shape} frames for {len(labels)} labels; delete it to regenerate")
        xs.append(frames)
        ys.append(labels)
        info[int(s)] = entry
    return frames_split(np.concatenate(xs), np.concatenate(ys)), info


def frames_split(frames, labels) -> Split:
    """Grayscale uint8 frames (N x 96 x 96, numpy or torch) and their classes as the car net's
    ``Split``: N x 1 x 96 x 96 floats in [0, 1], int64 labels."""
    import torch

    x, y = torch.as_tensor(frames), torch.as_tensor(labels)
    if x.dtype != torch.uint8 or x.dim() != 3 or len(x) != len(y):
        raise ValueError(f"frames must be uint8 N x H x W with one label each, got {x.dtype} {tuple(x.shape)} "
                         f"for {len(y)} labels")
    return Split(x.unsqueeze(1).float().div_(255.0), y.long())


def load_demonstrations(n_tracks: dict, config: DemoConfig = DemoConfig(), device="cpu", workers=None,
                        progress: bool = True) -> tuple[dict[str, Split], dict]:
    """Generate what is missing and load the train / val / test splits: ``n_tracks`` gives the
    number of tracks per split, e.g. ``{"train": 40, "val": 8, "test": 8}``."""
    seeds = {k: split_seeds(k, n) for k, n in n_tracks.items()}
    generate([s for v in seeds.values() for s in v], config, workers, progress)
    splits, info = {}, {}
    for k, v in seeds.items():
        split, info[k] = load_tracks(v, config)
        splits[k] = split.to(device)
    return splits, info


@dataclass(frozen=True)
class DemonstrationSplits:
    """Generated demonstrations as a data source that a worker process loads itself: the ``dataset``
    of a ``p_siren_parallel`` job. Pickling it sends two small configs, not a gigabyte of frames
    through a pipe. Calling it with a device returns the splits ``load_demonstrations`` returns; it
    never generates (processes side by side would record the same tracks), so generate first."""

    n_tracks: dict
    config: DemoConfig = DemoConfig()

    def __call__(self, device="cpu") -> dict[str, Split]:
        return {k: load_tracks(split_seeds(k, n), self.config)[0].to(device) for k, n in self.n_tracks.items()}

    def __str__(self) -> str:
        return f"car demonstrations {self.n_tracks} ({self.config.folder().name})"
