"""Where the project lives: the repository root, its build outputs and caches."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "build_dir", "results_dir", "full_results_dir", "cache_dir", "media_dir"]


def project_root() -> Path:
    """``$AANN_ROOT``, else the repository this package sits in (an editable install), else cwd."""
    env = os.environ.get("AANN_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "_toc.yml").is_file():
        return here
    return Path.cwd().resolve()


def build_dir() -> Path:
    return project_root() / "_build"


def results_dir() -> Path:
    """Where chapters write ``<chapter>.json``: ``$AANN_RESULTS`` or ``_build/results``."""
    env = os.environ.get("AANN_RESULTS")
    return Path(env) if env else build_dir() / "results"


def full_results_dir() -> Path:
    """The committed full-profile runs (the published edition): ``results/full/`` of the repository,
    each chapter's results file, its executed notebook and the media its page shows."""
    return project_root() / "results" / "full"


def cache_dir() -> Path:
    """Trained models, keyed by a hash of their configuration: ``$AANN_CACHE`` or ``_build/cache``."""
    env = os.environ.get("AANN_CACHE")
    return Path(env) if env else build_dir() / "cache"


def media_dir() -> Path:
    """Files a chapter's page shows by reference (animations): ``_build/media/<chapter>/``, copied
    into the site's ``_static/media/`` when it is built."""
    return build_dir() / "media"
