"""The chapter scheduler of ``aann.build``, on a tiny book of its own (real papermill, real kernels)."""

import json
from pathlib import Path

import pytest

from aann import build

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {title}

```{{code-cell}} ipython3
:tags: [parameters]

profile = "quick"
```

```{{code-cell}} ipython3
{code}
```
"""

CHAPTERS = {
    "first": "import time\ntime.sleep(2)  # long enough that `second` would start early if it did not wait\n"
             "open('first.txt', 'w').write(profile)",
    "second": "assert open('first.txt').read() == profile, 'ran before first'",
    "broken": "raise ValueError('broken on purpose')",
    "after_broken": "open('after_broken.txt', 'w').write('ran')",
}


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# A tiny book\n")
    for name, code in CHAPTERS.items():
        (tmp_path / "book" / f"{name}.md").write_text(HEADER.format(title=name, code=code))
    toc = "format: jb-book\nroot: intro\nparts:\n  - caption: All\n    chapters:\n"
    toc += "".join(f"      - file: {name}\n" for name in CHAPTERS)
    (tmp_path / "_toc.yml").write_text(toc)
    monkeypatch.setenv("AANN_ROOT", str(tmp_path))  # the lanes' subprocesses see it too
    monkeypatch.setattr(build, "NEEDS", {"second": ("first",), "after_broken": ("broken",)})
    return tmp_path


@pytest.mark.parametrize("jobs", [1, 2])
def test_execute_all_waits_for_needs_and_reports_every_failure(tiny_book, jobs):
    # `second` comes first in the order asked: it must still wait for `first`
    outcome = build.execute_all(["second", "broken", "first", "after_broken"], "quick", jobs=jobs)
    assert outcome["first"] is None and outcome["second"] is None
    assert "broken on purpose" in outcome["broken"]
    assert outcome["after_broken"] == "not run: it needs broken, which failed"
    assert not (tiny_book / "book" / "after_broken.txt").exists()
    assert (tiny_book / "_build" / "executed" / "second.ipynb").is_file()
    if jobs > 1:
        assert "broken on purpose" in (tiny_book / "_build" / "logs" / "broken.log").read_text()


def test_execute_all_rejects_bad_arguments(tiny_book):
    with pytest.raises(ValueError, match="unknown chapters.*'nope'.*chapters: first, second"):
        build.execute_all(["first", "nope"], "quick", jobs=2)
    with pytest.raises(ValueError, match="jobs must be a positive number"):
        build.execute_all(["first"], "quick", jobs=0)
    with pytest.raises(ValueError, match="profile must be one of"):
        build.execute_all(["first"], "fast", jobs=1)


STORED = """import torch
from aann.chapter import Chapter
from aann.results import write_results
write_results("stored", {"x": 1.0}, profile=profile, device="cpu", wall_time_s=1.0)
Chapter("stored", profile, torch.device("cpu")).show_file(profile.encode(), "lap.gif", alt="a lap")
"""


@pytest.fixture
def one_chapter_book(tmp_path, monkeypatch):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# A tiny book\n")
    (tmp_path / "book" / "stored.md").write_text(HEADER.format(title="stored", code=STORED))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nparts:\n  - caption: All\n"
                                       "    chapters:\n      - file: stored\n")
    monkeypatch.setenv("AANN_ROOT", str(tmp_path))
    monkeypatch.delenv("AANN_RESULTS", raising=False)
    return tmp_path


def test_only_a_full_profile_execution_is_published(one_chapter_book):
    import json

    import nbformat

    from aann import site

    with pytest.raises(FileNotFoundError, match=r"stored.ipynb does not exist: store one with .*--store"):
        site.edition_notebook("stored", "published")
    build.execute("stored", "quick")
    with pytest.raises(ValueError, match="'quick' profile: only full-profile executions are published"):
        site.store_execution("stored")
    build.execute("stored", "full")
    path = site.store_execution("stored")
    assert path == one_chapter_book / "results" / "full" / "stored.ipynb" == site.edition_notebook("stored", "published")
    meta = nbformat.read(path, as_version=4).metadata["aann"]
    run = json.loads((one_chapter_book / "results" / "full" / "stored.json").read_text())
    assert meta["profile"] == run["profile"] == "full" and meta["device"] == run["device"]
    assert meta["commit"] == run["commit"] and meta["wall_time_s"] == 1.0
    papermill = nbformat.read(path, as_version=4).metadata["papermill"]  # no path of the machine it ran on
    assert (papermill["input_path"], papermill["output_path"]) == ("_build/notebooks/stored.ipynb",
                                                                  "_build/executed/stored.ipynb")
    assert (one_chapter_book / "results" / "full" / "media" / "stored" / "lap.gif").read_text() == "full"
    assert 'src="_static/media/stored/lap.gif"' in nbformat.read(path, as_version=4).cells[-1].outputs[0]["data"]["text/html"]
    with pytest.raises(ValueError, match="edition must be one of"):
        site.edition_notebook("stored", "draft")
    build.execute("stored", "full", parameters={"seed": 3})
    with pytest.raises(ValueError, match=r"parameters \{'profile': 'full', 'seed': 3\}.*nothing else changed"):
        site.store_execution("stored")
    with pytest.raises(SystemExit, match="--store keeps full-profile executions only"):
        build.main(["execute", "stored", "--profile", "quick", "--store"])


def test_the_executed_chapter_shows_its_parameters_once_with_this_runs_values(one_chapter_book):
    import nbformat

    path = build.execute("stored", "full", parameters={"seed": 3})
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if c.get("metadata", {}).get("tags")]
    assert [c.metadata.tags for c in tagged] == [["parameters"]]  # papermill's own cell is gone
    assert tagged[0].source == 'profile = "full"\nseed = 3  # given for this run'
    assert nb.metadata.papermill.parameters == {"profile": "full", "seed": 3}


def test_merged_parameters_keep_their_comments(tmp_path):
    import nbformat

    given = {"profile": "full", "levels": [90, 95], "title": "run #2"}
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"parameters": given}})
    nb.cells = [nbformat.v4.new_code_cell('profile = "quick"  # "quick": small; "full": the papers\' scale\n'
                                          'levels = None  # sparsity levels in %\nseed = 0\ntitle = "a #1"',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('# Parameters\nprofile = "full"\nlevels = [90, 95]\n',
                                          metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(profile)")]
    nbformat.write(nb, tmp_path / "c.ipynb")
    build.merge_injected_parameters(tmp_path / "c.ipynb")
    cells = nbformat.read(tmp_path / "c.ipynb", as_version=4).cells
    assert [c.source for c in cells] == ['profile = "full"  # "quick": small; "full": the papers\' scale\n'
                                         'levels = [90, 95]  # sparsity levels in %\nseed = 0\ntitle = "run #2"',
                                         "print(profile)"]


def test_verify_reexecutes_in_the_full_profile_and_lists_what_moved(one_chapter_book, monkeypatch, capsys):
    from aann import site, verify
    from aann.verify import Tolerance

    monkeypatch.setitem(verify.RULES, "stored", [("x", Tolerance(0.1, 0, "a test metric"))])
    with pytest.raises(ValueError, match=r"no stored full-profile results to verify against for \['stored'\]"):
        build.verify(["stored"])
    build.execute("stored", "full")
    site.store_execution("stored")
    assert build.verify(["stored"])  # executed again: the same x
    assert "stored: all 1 metrics within their tolerances" in capsys.readouterr().out
    stored = one_chapter_book / "results" / "full" / "stored.json"
    run = json.loads(stored.read_text())
    stored.write_text(json.dumps({**run, "metrics": {"x": 1.5}}))
    assert not build.verify(["stored"], run=False)
    out = capsys.readouterr().out
    assert "stored: 1 of 1 metrics moved" in out and "MOVED" in out
    with pytest.raises(SystemExit, match="moved beyond their tolerances"):
        build.main(["verify", "stored", "--no-execute"])
    build.execute("stored", "quick")
    with pytest.raises(ValueError, match="holds a quick-profile run; verify compares full-profile runs"):
        build.verify(["stored"], run=False)


def test_the_published_edition_takes_the_last_execution_of_a_chapter_not_yet_stored(one_chapter_book, capsys):
    from aann import site

    assert site.unpublished() == ["stored"]
    with pytest.raises(FileNotFoundError, match=r"stored has no stored full-profile execution.*--unpublished"):
        site.edition_sources("published")
    build.main(["execute", "--unpublished", "--profile", "quick"])
    notebook, media = site.edition_sources("published")["stored"]
    assert notebook == one_chapter_book / "_build" / "executed" / "stored.ipynb"
    assert media == one_chapter_book / "_build" / "media" / "stored"
    assert "stored rendered from their last execution" in capsys.readouterr().out
    build.execute("stored", "full")
    site.store_execution("stored")
    assert site.unpublished() == []
    assert site.edition_sources("published")["stored"] == (
        one_chapter_book / "results" / "full" / "stored.ipynb", one_chapter_book / "results" / "full" / "media" / "stored")
    build.main(["execute", "--unpublished"])
    assert "nothing to execute" in capsys.readouterr().out


def test_stored_executions_name_no_path_of_the_machine_they_ran_on():
    import nbformat

    from aann.paths import full_results_dir

    for path in sorted(full_results_dir().glob("*.ipynb")):
        record = nbformat.read(path, as_version=4).metadata.get("papermill", {})
        for key in ("input_path", "output_path"):
            assert not Path(record.get(key) or "").is_absolute(), f"{path.name}: papermill's {key} is {record[key]}"
