"""Packaging: environment.yml and pyproject.toml's extras list the same dependencies; the sources
compile cleanly on newer Pythons."""

import re
import tomllib
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(reqs):
    return {re.split(r"[\[<>=~! ]", r.strip(), maxsplit=1)[0].lower(): r.strip().replace(" ", "") for r in reqs}


def test_environment_yml_matches_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]["book"] + project["optional-dependencies"]["test"]
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    env = [line.strip()[2:] for line in pip_section.splitlines() if line.strip().startswith("- ")]
    assert _names(env) == _names(extras)


def test_no_notebooks_in_book():
    assert not list((ROOT / "book").glob("*.ipynb"))


def test_sources_have_no_invalid_escape_sequences():
    """Python 3.12 warns about an invalid escape such as "\\s" in a plain string (LaTeX in a
    docstring) and later versions will refuse it: such strings must be raw."""
    for path in sorted([*ROOT.glob("aann/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py")]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # DeprecationWarning (3.11) / SyntaxWarning (3.12+)
            compile(path.read_text(), str(path), "exec")


def test_chapter_code_fits_the_page_column():
    """The site shows a code cell in a column of about 88 characters; a wider line scrolls
    sideways, out of the reader's sight."""
    import jupytext

    for path in sorted((ROOT / "book").glob("*.md")):
        cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
        wide = [line for c in cells for line in c.source.splitlines() if len(line) > 88]
        assert not wide, f"{path.name}: {len(wide)} code lines wider than 88 characters, e.g. {wide[0]!r}"
