"""Execute the book's chapters headlessly with papermill and render the site with Jupyter Book 1.

    python -m aann.build execute [--profile quick|full] [--jobs N] [--store] [--unpublished] [chapter ...]
    python -m aann.build site [--edition executed|published]
    python -m aann.build verify [--no-execute] chapter ...

A chapter is a MyST-markdown notebook in ``book/`` (a ``.md`` with a ``kernelspec`` header).
``execute`` converts it with jupytext to ``_build/notebooks/<chapter>.ipynb``, runs it with
papermill (the ``profile`` parameter injected) into ``_build/executed/<chapter>.ipynb``; a failing
cell fails the command. ``site`` stages ``book/`` with the executed notebooks in place of their
sources under ``_build/site_src`` and builds it with warnings as errors into ``_build/html``. So
the site shows exactly the outputs papermill produced, and no ``.ipynb`` ever lands in ``book/``.
The *published edition* is the stored full-profile executions instead (``execute --profile full
--store`` keeps a chapter's executed notebook and results in ``results/full/``; ``site --edition
published`` renders those without executing anything; ``aann.site``).

``execute --jobs N`` runs N chapters side by side, each in a subprocess on its share of the cores; a
chapter that starts from networks another chapter trains (``NEEDS``) waits for it. The default is
one at a time: on a 2-core CPU two lanes were slower than one, since most chapters already keep
both cores busy with processes of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .paths import build_dir, project_root
from .runtime import check_profile, default_profile

__all__ = ["book_dir", "is_notebook", "NEEDS", "chapters", "execute", "merge_injected_parameters", "execute_all",
           "verify", "main"]


def book_dir() -> Path:
    return project_root() / "book"


def is_notebook(path: Path) -> bool:
    """A MyST text notebook carries a kernelspec in its YAML header; plain pages do not."""
    text = path.read_text()
    if not text.startswith("---"):
        return False
    header = text.split("---", 2)[1]
    return "kernelspec:" in header


# Chapters that start from networks another chapter trains and caches (p-SIREN's reference networks,
# `aann.psiren.reference_network`): they run after it, or they would train the same networks again.
NEEDS = {
    "architecture_manifold": ("sparse_ternary",),
    "sense": ("sparse_ternary",),
    "robustness": ("sparse_ternary",),
}


def chapters() -> list[str]:
    """Names of the executable chapters, in the order of ``_toc.yml`` (later chapters start from
    networks that earlier ones trained and cached)."""
    import yaml

    toc = yaml.safe_load((project_root() / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    notebooks = [f for f in files if (book_dir() / f"{f}.md").is_file() and is_notebook(book_dir() / f"{f}.md")]
    stray = sorted({p.stem for p in book_dir().glob("*.md") if is_notebook(p)} - set(notebooks))
    if stray:
        raise ValueError(f"chapters missing from _toc.yml: {', '.join(stray)}")
    return notebooks


def execute(chapter: str, profile: str, log_output: bool = False, parameters: dict | None = None) -> Path:
    """Run one chapter with papermill; return the executed notebook's path.

    ``parameters`` override the chapter's other parameters (``profile`` is always injected)."""
    import jupytext
    import papermill

    source = book_dir() / f"{chapter}.md"
    if not source.is_file() or not is_notebook(source):
        raise ValueError(f"unknown chapter {chapter!r}; chapters: {', '.join(chapters())}")
    profile = check_profile(profile)
    converted = build_dir() / "notebooks" / f"{chapter}.ipynb"
    executed = build_dir() / "executed" / f"{chapter}.ipynb"
    converted.parent.mkdir(parents=True, exist_ok=True)
    executed.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(source), converted)
    start = time.time()
    papermill.execute_notebook(
        str(converted),
        str(executed),
        parameters={"profile": profile, **(parameters or {})},
        cwd=str(book_dir()),
        kernel_name="python3",
        progress_bar=False,
        log_output=log_output,
        # the executed notebook must not depend on the caller's environment for its root
        request_save_on_cell_execute=False,
    )
    merge_injected_parameters(executed)
    print(f"{chapter}: executed ({profile}) in {time.time() - start:.0f} s -> {executed}")
    return executed


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _comment(line: str) -> str:
    """The line's trailing comment with the spaces before it ("" if none); a "#" inside a string
    is not a comment."""
    import io
    import tokenize

    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                code = line[: tok.start[1]]
                return line[len(code.rstrip()):]
    except tokenize.TokenError:  # a line that does not tokenize alone (an open bracket): no comment kept
        return ""
    return ""


def merge_injected_parameters(path: Path) -> None:
    """Show a chapter's parameters once, as they were for this run: papermill puts the parameters
    it was given in a cell of its own after the ``parameters`` cell; their values are written into
    the ``parameters`` cell instead (its comments kept; a parameter it lacks is added at its end)
    and papermill's cell is removed. Papermill's record of them stays in the notebook's metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    given = nb.metadata.get("papermill", {}).get("parameters", {})
    tags = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    injected = [i for i, t in enumerate(tags) if "injected-parameters" in t]
    original = [i for i, t in enumerate(tags) if "parameters" in t]
    if not injected or not original:
        return
    cell, lines, seen = nb.cells[original[0]], [], set()
    for line in cell.source.splitlines():
        m = re.match(r"^(\w+)\s*=", line)
        if m and m.group(1) in given:
            seen.add(m.group(1))
            line = f"{m.group(1)} = {_literal(given[m.group(1)])}{_comment(line)}"
        lines.append(line)
    lines += [f"{k} = {_literal(v)}  # given for this run" for k, v in given.items() if k not in seen]
    cell.source = "\n".join(lines)
    del nb.cells[injected[0]]
    nbformat.write(nb, path)


def execute_all(names: list[str], profile: str, jobs: int = 1, parameters: dict | None = None,
                log_output: bool = True) -> dict[str, str | None]:
    """Execute ``names`` in ``jobs`` lanes; return ``{chapter: None}`` for each success and the
    reason for each failure. Nothing is left out silently: a chapter whose ``NEEDS`` failed is
    itself reported as failed.

    A free lane takes the first chapter, in ``names``' order, whose needs have succeeded.
    ``jobs == 1`` executes in this process (streaming each cell's output if ``log_output``). Otherwise
    each chapter runs as ``python -m aann.build execute <chapter>`` in a subprocess with its output
    in ``_build/logs/<chapter>.log`` and ``cpu_count // jobs`` threads (``OMP_NUM_THREADS``).
    """
    import shlex

    profile = check_profile(profile)
    unknown = sorted(set(names) - set(chapters()))
    if unknown:
        raise ValueError(f"unknown chapters {unknown}; chapters: {', '.join(chapters())}")
    if jobs < 1:
        raise ValueError(f"jobs must be a positive number of lanes, got {jobs}")
    outcome: dict[str, str | None] = {}
    pending = list(names)
    if jobs == 1:
        while ready := _ready(pending, outcome, names):
            name = ready[0]
            pending.remove(name)
            try:
                execute(name, profile, log_output=log_output, parameters=parameters)
                outcome[name] = None
            except Exception as err:  # reported, and the remaining chapters still run
                outcome[name] = f"{type(err).__name__}: {err}"
        if pending:
            raise RuntimeError(f"cannot schedule {pending}: their NEEDS wait on each other ({NEEDS})")
        return outcome

    logs = build_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    extra = [a for k, v in (parameters or {}).items() for a in ("-p", f"{k}={v!r}")]
    running = {}
    print(f"executing {len(names)} chapters ({profile}) in {jobs} lanes of {threads} threads; logs in {logs}")
    try:
        while pending or running:
            ready = _ready(pending, outcome, names)
            while ready and len(running) < jobs:
                name = ready.pop(0)
                pending.remove(name)
                cmd = [sys.executable, "-m", "aann.build", "execute", name, "--profile", profile, "--jobs", "1", *extra]
                log = open(logs / f"{name}.log", "w")
                # its own process group, so that an interrupt can stop the chapter's kernel with it
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=project_root(),
                                        start_new_session=True)
                running[name] = (proc, log, time.time())
                print(f"  {name}: started ({shlex.join(cmd[1:])})", flush=True)
            if pending and not running:
                raise RuntimeError(f"cannot schedule {pending}: their NEEDS wait on each other ({NEEDS})")
            time.sleep(1)
            for name, (proc, log, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                path = logs / f"{name}.log"
                if proc.returncode == 0:
                    outcome[name] = None
                    print(f"  {name}: done in {time.time() - start:.0f} s", flush=True)
                else:
                    tail = path.read_text(errors="replace")[-4000:]
                    outcome[name] = f"exit status {proc.returncode}; the end of {path}:\n{tail}"
                    print(f"  {name}: FAILED after {time.time() - start:.0f} s, see {path}", flush=True)
    finally:
        for proc, log, _ in running.values():  # interrupted: stop what still runs
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            log.close()
    return outcome


def _ready(pending: list[str], outcome: dict, names: list[str]) -> list[str]:
    """The pending chapters, in order, whose needs among ``names`` have succeeded; a chapter whose
    needs failed leaves ``pending`` with that reason in ``outcome``."""
    for name in list(pending):
        failed = [n for n in NEEDS.get(name, ()) if outcome.get(n)]
        if failed:
            pending.remove(name)
            outcome[name] = f"not run: it needs {', '.join(failed)}, which failed"
    return [n for n in pending if all(outcome.get(d, "") is None for d in NEEDS.get(n, ()) if d in names)]


def _parse_parameter(text: str) -> tuple[str, object]:
    import ast

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise SystemExit(f"-p expects NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a bare string


def verify(names: list[str], run: bool = True) -> bool:
    """Execute ``names`` in the full profile (unless ``run`` is False: the results already in
    ``_build/results``) and compare each one's metrics with its stored run in ``results/full``
    under ``aann.verify``'s tolerances; print what moved. True when nothing moved."""
    from .paths import full_results_dir, results_dir
    from .results import read_results
    from .verify import compare, report

    unknown = sorted(set(names) - set(chapters()))
    if unknown:
        raise ValueError(f"unknown chapters {unknown}; chapters: {', '.join(chapters())}")
    missing = [n for n in names if not (full_results_dir() / f"{n}.json").is_file()]
    if missing:
        raise ValueError(f"no stored full-profile results to verify against for {missing} "
                         f"(results/full/<chapter>.json; `execute --profile full --store` makes them)")
    if run:
        failed = {n: why for n, why in execute_all(names, "full").items() if why}
        if failed:
            raise RuntimeError(f"chapters failed before they could be compared: {failed}")
    held = True
    for name in names:
        stored = read_results(name, full_results_dir())
        new = read_results(name, results_dir())
        if new.get("profile") != "full":
            raise ValueError(f"{results_dir() / (name + '.json')} holds a {new.get('profile')}-profile run; "
                             "verify compares full-profile runs")
        differences = compare(name, stored["metrics"], new["metrics"])
        print(report(name, differences))
        print(f"  stored: {stored.get('device')}, {stored.get('date', 'no date')}, commit {stored.get('commit', '?')}; "
              f"new: {new.get('device')}, commit {new.get('commit', '?')}")
        held &= not any(d.moved for d in differences)
    return held


def main(argv=None) -> None:
    from .site import EDITIONS, build_site, store_execution, unpublished

    parser = argparse.ArgumentParser(prog="python -m aann.build")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="run chapters with papermill")
    ex.add_argument("chapters", nargs="*", help="default: all")
    ex.add_argument("--profile", default=os.environ.get("PROFILE") or None)
    ex.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                    help="another notebook parameter; VALUE is a Python literal, e.g. -p levels=[90,95]")
    ex.add_argument("-j", "--jobs", type=int, default=1,
                    help="chapters side by side, each on cpu_count / jobs threads (default: 1)")
    ex.add_argument("--unpublished", action="store_true",
                    help="only the chapters without a stored full-profile execution (make book)")
    ex.add_argument("--store", action="store_true",
                    help="keep each executed chapter (full profile only) in results/full/: the published edition")
    st = sub.add_parser("site", help="render _build/html")
    st.add_argument("--edition", choices=EDITIONS, default="executed",
                    help="executed: the chapters in _build/executed (default); published: the stored "
                         "full-profile executions in results/full/")
    ve = sub.add_parser("verify", help="re-execute chapters in the full profile and compare their metrics "
                                       "with the stored ones (aann.verify's tolerances)")
    ve.add_argument("chapters", nargs="+")
    ve.add_argument("--no-execute", action="store_true",
                    help="compare the results already in _build/results instead of executing")
    sub.add_parser("list", help="list the chapters")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(chapters()))
    elif args.command == "execute":
        profile = args.profile or default_profile()
        if args.store and profile != "full":
            raise SystemExit(f"--store keeps full-profile executions only (the published edition); the profile is {profile}")
        extra = dict(_parse_parameter(p) for p in args.parameter)
        names = args.chapters or chapters()
        if args.unpublished:
            names = [n for n in names if n in unpublished()]
            if not names:
                print("every chapter has a stored full-profile execution: nothing to execute")
                return
        outcome = execute_all(names, profile, args.jobs, parameters=extra)
        failed = {name: why for name, why in outcome.items() if why}
        for name, why in failed.items():
            print(f"{name} failed: {why}", file=sys.stderr)
        if failed:
            raise SystemExit(f"{len(failed)} of {len(outcome)} chapters failed: {', '.join(failed)}")
        if args.store:
            for name in outcome:
                print(f"{name}: stored in {store_execution(name).parent}")
    elif args.command == "verify":
        if not verify(args.chapters, run=not args.no_execute):
            raise SystemExit("metrics moved beyond their tolerances (listed above)")
    else:
        build_site(args.edition)


if __name__ == "__main__":
    main()
