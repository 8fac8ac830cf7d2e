"""What every chapter does before its story and after it: check the profile, choose the device,
start the clock, set the plot theme, read its budget; at the end, write its results file (and
read the committed full-profile one, to compare)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import cache
from .paths import full_results_dir, media_dir
from .profiles import SCALE_NOTES, budgets
from .results import device_description, format_duration, read_results, source_commit, write_results
from .runtime import check_profile, default_device

__all__ = ["Chapter", "start_chapter"]


@dataclass
class Chapter:
    """One execution of a chapter: its ``name``, ``profile``, ``device`` and ``budget``
    (``aann.profiles``), and when it started."""

    name: str
    profile: str
    device: torch.device
    started: float = field(default_factory=time.time)
    glued: dict = field(default_factory=dict)
    # aann.cache.USAGE when the chapter started: what its execution read from earlier runs is the difference
    usage_at_start: dict = field(default_factory=lambda: dict(cache.USAGE))

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    @property
    def budget(self):
        return budgets(self.name, self.profile)

    def write_results(self, metrics: dict) -> Path:
        """``_build/results/<chapter>.json`` with the metrics, the profile, the device and the
        wall time since the start; and the page's provenance note (``provenance``), glued now that
        the wall time is known (the page shows it under its title all the same)."""
        wall_time_s = time.time() - self.started
        path = write_results(self.name, metrics, profile=self.profile, device=self.device, wall_time_s=wall_time_s,
                             reused=self.reused())
        self.glue(provenance=self.provenance(wall_time_s))
        return path

    def provenance(self, wall_time_s: float | None = None) -> str:
        """The note a chapter's page opens with (Markdown): which profile, device, date and commit
        made it and how long it ran; for the quick profile, that its numbers are small-budget
        numbers; for the full profile, where its budgets differ from the papers' scale
        (``aann.profiles.SCALE_NOTES``)."""
        made = (f"on {device_description(self.device)}, {time.strftime('%Y-%m-%d', time.localtime(self.started))}, "
                f"from commit {source_commit()}")
        if wall_time_s is not None:
            reused = self.reused()
            made += f", in {format_duration(wall_time_s)}" + (f" ({reused})" if reused else "")
        if self.quick:
            return (f"**This page was executed with the quick profile** {made}. Its budgets are small (minutes "
                    "on a CPU): the numbers show the methods at work, not the papers' scale, and some "
                    "conclusions differ at full scale; the tables at the end compare with the papers.")
        differs = SCALE_NOTES.get(self.name)
        return (f"**This page was executed with the full profile** (the papers' scale) {made}."
                + (f" Where it differs from the papers' scale: {differs}" if differs else ""))

    def reused(self) -> str:
        """What this execution took from earlier runs: ``"reading 12 trained networks from the model
        store; reading 81 trained networks from the model cache; training 3"``, or "" where it trained
        and searched everything itself."""
        used = {k: cache.USAGE[k] - self.usage_at_start.get(k, 0) for k in cache.USAGE}

        def count(key, noun, plural):
            return f"{used[key]} {noun if used[key] == 1 else plural}"

        kinds = (("networks read", "trained network", "trained networks"),
                 ("sweeps read", "finished sweep", "finished sweeps"),
                 ("searches read", "finished search", "finished searches"))
        parts = []
        for where, suffix in (("the model store", cache.STORE_READ), ("the model cache", "")):
            reads = [count(k + suffix, noun, plural) for k, noun, plural in kinds if used.get(k + suffix)]
            if reads:
                listed = ", ".join(reads[:-1]) + (" and " if len(reads) > 1 else "") + reads[-1]
                parts.append(f"reading {listed} from {where}")
        if parts and used.get("networks trained"):
            parts.append(f"training {used['networks trained']}")
        if used.get("trainings resumed"):  # partial trainings live in the cache only
            parts.append(f"resuming {count('trainings resumed', 'training', 'trainings')} from the last finished epoch")
        # a search resumed from the store extends a shorter finished one committed with the book
        for where, suffix in ((" in the model store", cache.STORE_READ), ("", "")):
            if used.get("searches resumed" + suffix):
                parts.append(f"resuming {count('searches resumed' + suffix, 'search', 'searches')} "
                             f"from a checkpoint{where}")
        return "; ".join(parts)

    def show_file(self, data: bytes, name: str, alt: str):
        """Write ``data`` (an animation, say) to ``_build/media/<chapter>/<name>`` and return the HTML
        that shows it on the page, loaded lazily from the site's ``_static/media/`` rather than
        inlined into the notebook (an inlined animation weighs megabytes on every page load)."""
        from IPython.display import HTML

        path = media_dir() / self.name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return HTML(f'<img src="_static/media/{self.name}/{name}" alt="{alt}" loading="lazy" '
                    'style="image-rendering: pixelated; max-width: 100%">')

    def glue(self, **values) -> None:
        """Glue each value (a string of Markdown: a formatted number, a clause) under its name, so
        the chapter's static prose shows it with ``{glue:md}`name```. The values are also kept in
        ``self.glued``, for a reader running the notebook without myst-nb."""
        self.glued.update({k: str(v) for k, v in values.items()})
        try:
            from IPython.display import Markdown
            from myst_nb import glue
        except ImportError:  # only the rendered page shows glued values, and rendering needs myst-nb
            return
        for name, value in values.items():
            glue(name, Markdown(str(value)), display=False)

    def full_results(self) -> dict | None:
        """The committed full-profile results of this chapter (``results/full/<chapter>.json``: its
        metrics, profile, device, versions and wall time), or None where none is committed."""
        folder = full_results_dir()
        return read_results(self.name, folder) if (folder / f"{self.name}.json").is_file() else None


def start_chapter(name: str, profile: str, device=None) -> Chapter:
    """Check ``profile``, pick the device (``aann.runtime.default_device``) and set seaborn's theme."""
    import seaborn as sns

    check_profile(profile)
    sns.set_theme(style="whitegrid", context="notebook")
    chapter = Chapter(name, profile, torch.device(device) if device is not None else default_device())
    shutil.rmtree(media_dir() / name, ignore_errors=True)  # what an earlier execution showed is not this one's
    return chapter
