"""environment.yml and pyproject.toml's extras must list the same dependencies."""

import re
import tomllib
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
