"""Every notebook at the smoke profile, and the book built from them (-W -n: warnings fail)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
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
    for nb in runner.find_notebooks(root=ROOT):
        runner.run_notebook(nb, "smoke", out_dir=out, root=ROOT, progress=False)
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


def test_fig02_glues_every_number_the_report_uses(smoke_book):
    nb = nbformat.read(smoke_book / "book" / "executed" / "fig02_mnist_bias_maps.ipynb", as_version=4)
    keys = _glue_keys(nb)
    report = (ROOT / "book" / "report.md").read_text()
    import re
    used = set(re.findall(r"fig02_mnist_bias_maps\.ipynb::(\w+):", report))
    assert used and used <= keys, used - keys
    assert {"cnn_acc", "logreg_acc", "tm_cnn_maps", "tm_logreg_maps", "tm_mean_digits",
            "tm_logreg_weights", "cnn_top_class"} <= used


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
