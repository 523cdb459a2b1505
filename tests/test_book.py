"""Every notebook at the smoke profile, and the book built from them (-W -n: warnings fail)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, glue_values
from wna import run as runner

JB = Path(sys.executable).with_name("jupyter-book")


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory, mnist_available):
    """A copy of the book's sources with every notebook executed at the smoke profile."""
    site = tmp_path_factory.mktemp("book")
    for f in ["_config.yml", "_toc.yml"]:
        shutil.copy(ROOT / f, site / f)
    shutil.copytree(ROOT / "book", site / "book", ignore=shutil.ignore_patterns("executed"))
    out = site / "book" / "executed"
    runner.run_notebooks(profile="smoke", out_dir=out, progress=False)
    return site


def _build(site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(JB), "build", "--all", "-W", "-n", "--keep-going", str(site)],
                          capture_output=True, text=True, timeout=900)


def _glue_keys(nb) -> set:
    keys = set()
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            sb = o.get("metadata", {}).get("scrapbook")
            if sb:
                keys.add(sb["name"])
    return keys


@pytest.mark.slow  # executes every notebook (smoke profile): minutes
def test_every_notebook_runs_at_smoke_and_records_its_run(smoke_book):
    for nb_path in runner.find_notebooks(root=ROOT):
        out = smoke_book / "book" / "executed" / f"{nb_path.stem}.ipynb"
        nb = nbformat.read(out, as_version=4)
        rec = json.loads(out.with_suffix(".run.json").read_text())
        assert rec["profile"] == "smoke" and rec["wall_seconds"] > 0
        assert rec["versions"]["torch"] and rec["parameters"]["profile"] == "smoke"
        assert nb.metadata["wna"]["profile"] == "smoke"
        hidden = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
        assert len(hidden) == 2 and all("remove-cell" in c.metadata.tags for c in hidden)
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


GLUE = re.compile(r"\{glue:text\}`executed/(\w+)\.ipynb::(\w+):([^`]*)`")


@pytest.mark.slow  # executes every notebook (smoke profile): minutes
def test_fig02_glues_every_number_the_report_uses(smoke_book):
    report = (ROOT / "book" / "report.md").read_text()
    used = {}
    for nb_name, key, _ in GLUE.findall(report):
        used.setdefault(nb_name, set()).add(key)
    chapters = {p.stem for p in runner.find_notebooks(root=ROOT)}
    # every paper figure and table reaches the report; the book's own chapters (the speed of this
    # build: the machine's timings, different on every run) stay out of it
    assert set(used) == {c for c in chapters if c.startswith(("fig", "table"))} and "performance" in chapters
    for nb_name, keys in used.items():
        nb = nbformat.read(smoke_book / "book" / "executed" / f"{nb_name}.ipynb", as_version=4)
        glued = _glue_keys(nb)
        assert keys <= glued, f"{nb_name} does not glue {sorted(keys - glued)}"
    assert {"cnn_acc", "logreg_acc", "tm_cnn_maps", "tm_logreg_maps", "tm_mean_digits",
            "tm_logreg_weights", "cnn_top_class", "seeds_tm_cnn_maps_min",
            "seeds_tm_cnn_maps_max"} <= used["fig02_mnist_bias_maps"]


@pytest.mark.slow  # executes every notebook (smoke profile): minutes
def test_fig02_dot_rule_gives_the_papers_mean_digit_number(smoke_book):
    nb = nbformat.read(smoke_book / "book" / "executed" / "fig02_mnist_bias_maps.ipynb",
                       as_version=4)
    values = glue_values(nb)
    # Fig. 2C's mean digits under the raw dot product: 6,310 of 10,000 test digits
    assert values["tm_mean_digits"] == "63.1" and values["tm_mean_digits_diff"] == "0.0"
    assert values["tm_mean_digits_cos"] == "82.16"
    assert values["seeds_tm_mean_digits_min"] == values["seeds_tm_mean_digits_max"] == "63.1"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str):
    """Each markdown table of ``text`` as (header cells, rows of cells)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            header, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            yield header, rows
        else:
            i += 1


def _paper_numbers_typed(text: str, paper: dict) -> list[str]:
    """The paper's non-integer numbers that ``text`` types outside a glue role."""
    bare = GLUE.sub(" ", text)
    found = []
    for key, value in paper.items():
        if float(value) == int(value):
            continue  # small integers (a class, a count of 0) are everywhere in prose
        whole, frac = f"{value:g}".split(".")
        if re.search(rf"(?<![\d.]){whole}\.{frac}0*(?!\d)", bare):
            found.append(f"{key}={value:g}")
    return found


def _paper_column_problems(report: str, glued: dict, paper: dict) -> list[str]:
    """Rows whose "paper" cell is not one glued ``paper_<key>`` holding ``wna.paper``'s value."""
    problems, seen = [], set()
    for header, rows in _tables(report):
        if "paper" not in header:
            continue
        col = header.index("paper")
        for row in rows:
            m = GLUE.fullmatch(row[col])
            key = m.group(2) if m else ""
            name = key[len("paper_"):]
            if not (key.startswith("paper_") and name in paper):
                problems.append(f"{row[0]}: {row[col]!r} is not a glued paper_<key>")
            elif glued.get(m.group(1), {}).get(key) != repr(paper[name]):
                problems.append(f"{row[0]}: {m.group(1)} glues {key} as "
                                f"{glued.get(m.group(1), {}).get(key)!r}, not {paper[name]!r}")
            else:
                seen.add(name)
    problems += [f"{k}: in no table" for k in paper if k not in seen]
    return problems


@pytest.mark.slow  # executes every notebook (smoke profile): minutes
def test_the_report_types_no_paper_number(smoke_book):
    from wna.paper import PAPER, TABLE2_CELLS

    report = (ROOT / "book" / "report.md").read_text()
    glued = {nb.stem: glue_values(nbformat.read(smoke_book / "book" / "executed" / f"{nb.stem}.ipynb",
                                                 as_version=4))
             for nb in runner.find_notebooks(root=ROOT)}
    # Table 2's cells (fractions such as 0.1, which prose and γ labels use too) are checked in the
    # report's tables, cell by cell, not searched for in the prose
    cells = {**PAPER, **TABLE2_CELLS}
    assert _paper_column_problems(report, glued, cells) == []
    assert _paper_numbers_typed(report, PAPER) == []

    # the checks bite: a paper number typed back into a table or into the prose is caught
    glue_99 = "{glue:text}`executed/fig02_mnist_bias_maps.ipynb::paper_cnn_acc:g`"
    typed = report.replace(glue_99, "99.2")
    assert typed != report
    assert _paper_column_problems(typed, glued, cells) == [
        "CNN test accuracy (%): '99.2' is not a glued paper_<key>", "cnn_acc: in no table"]
    assert _paper_numbers_typed(typed, PAPER) == ["cnn_acc=99.2"]
    assert _paper_numbers_typed(report + "\nThe paper's 63.10% on mean digits.\n", PAPER)
    wrong = {**glued, "fig02_mnist_bias_maps": {**glued["fig02_mnist_bias_maps"],
                                                "paper_cnn_acc": "99.19"}}
    assert _paper_column_problems(report, wrong, cells)
    wrong_cell = {**glued, "fig06_bias_map_attack": {**glued["fig06_bias_map_attack"],
                                                     "paper_t2_noise_bias_g05": "0.2"}}
    assert [p for p in _paper_column_problems(report, wrong_cell, cells) if "γ = 0.5" in p]


@pytest.mark.slow
def test_book_builds_and_a_missing_glue_key_fails_it(smoke_book):
    res = _build(smoke_book)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (smoke_book / "_build" / "html" / "book" / "report.html").read_text()
    assert "smoke" in html and "{glue" not in html
    fig = (smoke_book / "_build" / "html" / "book" / "executed" / "fig02_mnist_bias_maps.html").read_text()
    assert "<img" in fig  # the figures are in the page
    assert "n_samples = 1_000_000" not in fig  # the parameters cell is hidden

    broken = smoke_book.parent / "broken-book"
    shutil.copytree(smoke_book, broken, ignore=shutil.ignore_patterns("_build"))
    with open(broken / "book" / "report.md", "a") as f:
        f.write("\nMissing: {glue:text}`executed/fig02_mnist_bias_maps.ipynb::no_such_key:.2f`\n")
    res = _build(broken)
    assert res.returncode != 0
    assert "no_such_key" in res.stdout + res.stderr


def test_a_failing_notebook_fails_the_run(tmp_path):
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    for p in runner.PROFILES:
        (tmp_path / "notebooks" / "profiles" / f"{p}.yml").write_text("boom: {x: 2}\n")
    (tmp_path / "notebooks" / "boom.py").write_text(
        "# %% [markdown]\n# # Figure 0\n\n# %% tags=[\"parameters\"]\nx = 1\nprofile = 'paper'\n\n"
        "# %%\nassert x == 1, f'x is {x}'\n")
    nb = runner.find_notebooks(["boom"], root=tmp_path)[0]
    with pytest.raises(runner.NotebookFailed, match="x is 2"):
        runner.run_notebook(nb, "smoke", root=tmp_path, progress=False)
    # the parameter override reaches the notebook
    out = runner.run_notebook(nb, "smoke", overrides={"x": 1}, root=tmp_path, progress=False)
    assert out.is_file()


def test_cli_rejects_unknown_notebook_and_profile(capsys):
    from wna import cli
    assert cli.main(["run", "no_such_notebook", "--profile", "smoke"]) == 1
    assert "no notebook" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "huge"])


def test_paper_compare_lines():
    from wna import paper

    assert paper.ABOUT.keys() == paper.PAPER.keys()
    assert paper.compare("cnn_acc", 99.19, glue=False) == "CNN test accuracy: 99.19% (paper 99.2%, -0.01)"
    assert paper.compare("tm_mean_digits", 63.1, glue=False).endswith("63.10% (paper 63.1%, +0.00)")
    assert paper.compare("cnn_top_class", 3, glue=False).endswith(": 3 (paper 8, differs)")
    assert paper.compare("mlp_count_1", 12, glue=False).endswith(": 12 (paper 0, +12)")
    assert paper.compare_range("cnn_acc", [99.0, 98.91, 99.12], glue=False) == (
        "CNN test accuracy: 98.91–99.12% over 3 runs (paper 99.2%)")
    assert paper.compare_range("cnn_top_class", [8, 3, 8], glue=False).endswith(
        "3, 8 over 3 runs (paper 8; 2 of 3 agree)")
    with pytest.raises(KeyError, match="not a paper number"):
        paper.compare("no_such_key", 1.0, glue=False)


def _tiny_project(root: Path, notebooks: dict) -> None:
    """A project folder with the given notebooks (name -> code after the parameters cell)."""
    (root / "notebooks" / "profiles").mkdir(parents=True)
    for p in runner.PROFILES:
        (root / "notebooks" / "profiles" / f"{p}.yml").write_text("{}\n")
    for name, code in notebooks.items():
        (root / "notebooks" / f"{name}.py").write_text(
            "# %% tags=[\"parameters\"]\nprofile = 'paper'\n\n# %%\nimport os, pathlib, time\n" + code)


_WAIT_FOR = """
pathlib.Path('started-{me}').touch()
t0 = time.monotonic()
while not pathlib.Path('started-{other}').exists():  # only if both kernels run at once
    assert time.monotonic() - t0 < 120, 'ran alone'
    time.sleep(0.05)
pathlib.Path('threads-{me}').write_text(os.environ.get('OMP_NUM_THREADS', ''))
pathlib.Path('cores-{me}').write_text(' '.join(map(str, sorted(os.sched_getaffinity(0)))))
pathlib.Path('done-{me}').touch()
"""


def test_jobs_run_notebooks_side_by_side_and_the_timing_chapter_alone(tmp_path, monkeypatch):
    _tiny_project(tmp_path, {
        "a": _WAIT_FOR.format(me="a", other="b"),
        "b": _WAIT_FOR.format(me="b", other="a"),
        runner.ALONE[0]: "assert pathlib.Path('done-a').exists() and pathlib.Path('done-b').exists()\n",
    })
    monkeypatch.chdir(tmp_path)
    outs = runner.run_notebooks(profile="smoke", progress=False, jobs=2)
    assert [o.stem for o in outs] == ["a", "b", runner.ALONE[0]]  # the order asked for
    cores = sorted(os.sched_getaffinity(0))
    threads = max(1, len(cores) // 2)
    assert (tmp_path / "threads-a").read_text() == (tmp_path / "threads-b").read_text() == str(threads)
    lanes = [set((tmp_path / f"cores-{k}").read_text().split()) for k in "ab"]
    assert all(len(lane) == threads for lane in lanes)
    if len(cores) >= 2:  # each kernel on its own cores
        assert not lanes[0] & lanes[1]
    with pytest.raises(ValueError, match="jobs"):
        runner.run_notebooks(profile="smoke", jobs=0)


def test_a_failing_notebook_fails_a_side_by_side_run(tmp_path, monkeypatch):
    _tiny_project(tmp_path, {"good": "x = 1\n", "bad": "assert False, 'bad notebook'\n"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(runner.NotebookFailed, match="bad notebook"):
        runner.run_notebooks(profile="smoke", progress=False, jobs=2)
