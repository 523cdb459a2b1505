"""The pins in requirements.txt, environment.yml and the issue's list agree."""

import re
import tomllib

import yaml

from conftest import ROOT

MUST_HAVE = {"torch", "torchvision", "jupyter-book", "jupytext", "papermill", "myst-nb", "numpy", "scipy", "matplotlib",
             "seaborn", "scikit-learn", "tqdm", "pytest"}


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_and_environment_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    envpins = _pins(pip_part)
    assert req == envpins
    assert MUST_HAVE <= set(req)
    major = int(req["jupyter-book"].split(".")[0])
    assert major == 1, "jupyter-book must stay below 2"


def test_console_script_and_layout():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["wna"] == "wna.cli:main"
    for p in ["_config.yml", "_toc.yml", "environment.yml", "Makefile", "README.md", ".ci/run",
              ".gitignore", "notebooks/profiles/smoke.yml", "notebooks/profiles/ci.yml",
              "notebooks/profiles/paper.yml", "book/intro.md", "book/report.md"]:
        assert (ROOT / p).is_file(), p
    ignored = (ROOT / ".gitignore").read_text().split()
    for pattern in ["*.ipynb", "book/executed/", "_build/", ".venv/", "*.pt"]:
        assert pattern in ignored


def test_every_notebook_has_a_profile_entry_and_parameters_cell():
    import jupytext

    nbs = sorted((ROOT / "notebooks").glob("*.py"))
    assert nbs
    for profile in ["smoke", "ci", "paper"]:
        prof = yaml.safe_load((ROOT / "notebooks" / "profiles" / f"{profile}.yml").read_text())
        for nb in nbs:
            assert nb.stem in prof, f"{nb.stem} missing from {profile}.yml"
    for nb in nbs:
        cells = jupytext.read(nb).cells
        paper_figure = nb.stem.startswith(("fig", "table"))  # the others: the book's own chapters (performance)
        assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
        assert not paper_figure or "Fig" in cells[0].source or "Table" in cells[0].source, nb.name
        params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, nb.name
