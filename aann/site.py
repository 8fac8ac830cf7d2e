"""The site: the book staged with its notebooks and rendered by Jupyter Book 1, and the published
edition it can be rendered from.

Two **editions** of the chapters can be rendered:

* ``executed``: the notebooks that ``python -m aann.build execute`` just produced
  (``_build/executed/``), whatever the profile;
* ``published``: the stored full-profile executions, ``results/full/<chapter>.ipynb``, each beside
  the results file it wrote (``results/full/<chapter>.json``: metrics, device, date, commit, wall
  time). ``python -m aann.build execute CHAPTER --profile full --store`` stores one; rendering them
  executes nothing, so the site shows the papers' scale on any laptop. A chapter with no stored
  execution yet is rendered from its last execution in ``_build/executed/`` instead (``make book``
  executes those chapters, and only those, in the quick profile first); its provenance note says
  which profile the page shows, and the build lists the chapters rendered so.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .build import book_dir, chapters
from .paths import build_dir, full_results_dir, media_dir, project_root, results_dir

__all__ = ["EDITIONS", "edition_notebook", "unpublished", "edition_sources", "store_execution", "MATHJAX", "vendor_mathjax",
           "stage_site", "with_download_link", "with_launch_buttons", "build_site"]

EDITIONS = ("executed", "published")


def edition_notebook(chapter: str, edition: str) -> Path:
    """The executed notebook of ``chapter`` in ``edition``; a missing one is an error that says how
    to make it."""
    if edition == "executed":
        path = build_dir() / "executed" / f"{chapter}.ipynb"
        how = f"run `python -m aann.build execute {chapter}` first"
    elif edition == "published":
        path = full_results_dir() / f"{chapter}.ipynb"
        how = f"store one with `python -m aann.build execute {chapter} --profile full --store`"
    else:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {how}")
    return path


def unpublished() -> list[str]:
    """The chapters without a stored full-profile execution (``results/full/<chapter>.ipynb``)."""
    return [c for c in chapters() if not (full_results_dir() / f"{c}.ipynb").is_file()]


def edition_sources(edition: str) -> dict[str, tuple[Path, Path]]:
    """``{chapter: (notebook, media folder)}`` to render ``edition`` from. The published edition
    takes each chapter's stored execution, or its last execution where none is stored."""
    missing = set(unpublished()) if edition == "published" else set()
    sources = {}
    for chapter in chapters():
        if chapter in missing:
            try:
                notebook = edition_notebook(chapter, "executed")
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{chapter} has no stored full-profile execution and no execution in "
                                        f"_build/executed: run `python -m aann.build execute --unpublished` "
                                        f"(or store one); {err}") from None
            sources[chapter] = (notebook, media_dir() / chapter)
        else:
            notebook = edition_notebook(chapter, edition)
            folder = media_dir() if edition == "executed" else full_results_dir() / "media"
            sources[chapter] = (notebook, folder / chapter)
    if missing:
        print(f"published edition: {', '.join(sorted(missing))} rendered from their last execution "
              "(no stored full-profile execution yet)")
    return sources


def _relative_to_root(path: str) -> str:
    """``path`` relative to the repository (``_build/executed/x.ipynb``), or its file name alone
    where it lies outside."""
    try:
        return Path(path).resolve().relative_to(project_root().resolve()).as_posix()
    except ValueError:
        return Path(path).name


def store_execution(chapter: str) -> Path:
    """Keep the chapter's last execution as its published edition: ``_build/executed/<chapter>.ipynb``
    and the results file it wrote (``_build/results/<chapter>.json``) copied to ``results/full/``,
    the notebook's metadata given the run's provenance (``aann``: profile, device, date, commit,
    wall time), and the files its page shows (``_build/media/<chapter>/`` to
    ``results/full/media/<chapter>/``). Only an execution of the chapter as it stands is
    published: the full profile and no other parameter changed, and the results file written
    during that execution (its time between the notebook's start and end, as papermill recorded
    them)."""
    import nbformat

    executed = edition_notebook(chapter, "executed")
    results = results_dir() / f"{chapter}.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results} does not exist: the execution of {chapter} wrote no results file")
    run = json.loads(results.read_text())
    if run.get("profile") != "full":
        raise ValueError(f"{results} comes from the {run.get('profile')!r} profile: only full-profile "
                         "executions are published")
    nb = nbformat.read(executed, as_version=4)
    record = nb.metadata.get("papermill", {})
    given = record.get("parameters", {})
    if given != {"profile": "full"}:
        raise ValueError(f"{executed} was executed with the parameters {given} (papermill's record): only the "
                         "chapter as it stands, with profile = 'full' and nothing else changed, is published")
    written = datetime.datetime.fromtimestamp(results.stat().st_mtime, datetime.timezone.utc)
    start, end = (datetime.datetime.fromisoformat(record.get(k) or "") for k in ("start_time", "end_time"))
    if not start <= written <= end + datetime.timedelta(minutes=1):
        raise ValueError(f"{results} was written at {written:%Y-%m-%d %H:%M:%S} UTC, outside the execution of "
                         f"{executed} ({start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC): they are not one run")
    nb.metadata["aann"] = {k: run.get(k) for k in ("profile", "device", "date", "commit", "wall_time_s")}
    for k in ("input_path", "output_path"):  # papermill's absolute paths name the machine: keep them relative
        if record.get(k):
            record[k] = _relative_to_root(record[k])
    out = full_results_dir()
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / f"{chapter}.ipynb")
    shutil.copy(results, out / f"{chapter}.json")
    media = out / "media" / chapter
    if media.exists():
        shutil.rmtree(media)
    if (media_dir() / chapter).is_dir():
        shutil.copytree(media_dir() / chapter, media)
    return out / f"{chapter}.ipynb"


MATHJAX = "mathjax@3.2.2"


def vendor_mathjax() -> Path | None:
    """MathJax 3 from the npm registry into ``_build/vendor/mathjax``, so the site typesets its math
    offline too; None (the site then loads MathJax from its CDN) where npm is not available."""
    target = build_dir() / "vendor" / "mathjax"
    if (target / "tex-mml-chtml.js").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the site will load MathJax from its CDN (no math offline)")
        return None
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", MATHJAX, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(next(Path(tmp).glob("mathjax-*.tgz"))) as tar:
            keep = [m for m in tar.getmembers() if m.isfile() and (
                m.name == "package/es5/tex-mml-chtml.js" or m.name.startswith("package/es5/output/chtml/fonts/woff-v2/"))]
            for member in keep:
                member.name = member.name.removeprefix("package/es5/")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
            tar.extractall(target, members=keep, **safe)
    return target


def stage_site(edition: str = "executed") -> Path:
    """``book/`` + the chapters' notebooks of ``edition`` + the top-level config and toc, and the
    pages generated from the results files, in ``_build/site_src``."""
    root = project_root()
    stage = build_dir() / "site_src"
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(book_dir(), stage, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    sources = edition_sources(edition)
    for chapter, (notebook, _) in sources.items():
        # the chapter's source, for its download link; only_build_toc_files keeps Sphinx from parsing it
        (stage / "sources").mkdir(exist_ok=True)
        (stage / f"{chapter}.md").replace(stage / "sources" / f"{chapter}.md")
        with_download_link(notebook, chapter, stage / f"{chapter}.ipynb")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(root / name, stage / name)
    # the landing page's tables, generated from results/full/ (book/intro.md includes them)
    from .summary import glance_markdown, runs_markdown

    generated = stage / "_generated"
    generated.mkdir()
    (generated / "results_at_a_glance.md").write_text(glance_markdown())
    (generated / "full_runs.md").write_text(runs_markdown())
    from .bench_report import bench_markdown, execution_times_markdown

    (generated / "benchmarks.md").write_text(bench_markdown())
    (generated / "execution_times.md").write_text(execution_times_markdown())
    # files the pages show by reference (Chapter.show_file), served from _static/media/
    for chapter, (_, media) in sources.items():
        if media.is_dir():
            shutil.copytree(media, stage / "_static" / "media" / chapter)
    import yaml

    config = with_launch_buttons(yaml.safe_load((stage / "_config.yml").read_text()))
    mathjax = vendor_mathjax()
    if mathjax is not None:
        shutil.copytree(mathjax, stage / "_static" / "mathjax")
        config.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = "mathjax/tex-mml-chtml.js"
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return stage


PROVENANCE_BLOCK = "```{glue:md} provenance\n:format: myst\n```"


def with_download_link(notebook: Path, chapter: str, target: Path) -> None:
    """Write ``notebook`` to ``target`` with a line under its provenance note that offers the
    chapter's source (``sources/<chapter>.md``, a MyST Markdown notebook) for download; the theme's
    download button offers the executed notebook itself."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "markdown" and PROVENANCE_BLOCK in c.source), None)
    if cell is None:
        raise ValueError(f"{notebook} has no provenance note ({PROVENANCE_BLOCK!r} under its title)")
    cell.source = cell.source.replace(
        PROVENANCE_BLOCK, f"{PROVENANCE_BLOCK}\n\nDownload {{download}}`this chapter's source <sources/{chapter}.md>` "
        "(a MyST Markdown notebook; Jupytext opens it in Jupyter) or, from the download button at the top of "
        "the page, the executed notebook shown here.", 1)
    nbformat.write(nb, target)


def with_launch_buttons(config: dict) -> dict:
    """``config`` (``_config.yml``) with the repository and Colab and Binder launch buttons where the
    repository is known: ``$AANN_REPOSITORY`` or, in GitHub Actions, ``$GITHUB_REPOSITORY``
    (``owner/name``; branch ``$AANN_BRANCH``, default ``main``). A launch button opens the page's
    stored full-profile execution, ``results/full/<chapter>.ipynb``."""
    import os
    import re

    repo = os.environ.get("AANN_REPOSITORY") or os.environ.get("GITHUB_REPOSITORY")
    if not repo:
        return config
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"the repository must be given as owner/name (e.g. aann-book/aann), got {repo!r}")
    config = {**config, "repository": {"url": f"https://github.com/{repo}", "branch": os.environ.get("AANN_BRANCH", "main"),
                                       "path_to_book": "results/full"},
              "launch_buttons": {"notebook_interface": "classic", "binderhub_url": "https://mybinder.org",
                                 "colab_url": "https://colab.research.google.com"}}
    config["html"] = {**config.get("html", {}), "use_repository_button": True}
    return config


def build_site(edition: str = "executed") -> Path:
    """Render the staged book with Jupyter Book 1, warnings as errors; return ``_build/html``."""
    stage = stage_site(edition)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", "--all", "-W", "-n", "--keep-going", str(stage)]
    subprocess.run(cmd, check=True)
    html = build_dir() / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(stage / "_build" / "html"), html)
    print(f"site: {html / 'index.html'}")
    return html
