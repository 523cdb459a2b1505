"""The notebook runner: jupytext ``.py`` -> papermill -> ``book/executed/``.

``run_notebooks(["fig02_mnist_bias_maps"], profile="ci")`` converts each
notebook, executes it with the profile's parameters (plus overrides) and
writes ``book/executed/<name>.ipynb``. The run's parameters, profile, package
versions and wall time are stored in the notebook's metadata (``wna``) and in
``book/executed/<name>.run.json``; the parameters cells are tagged
``remove-cell`` so the book shows prose, code and results only.

Every parameter, from the profile or an override, is checked against the
notebook's ``parameters`` cell before anything runs (:mod:`wna._params`: the
type of each default says what a value may be; an unknown name is refused);
a bad one raises :class:`ParameterError`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from ._params import ParameterError, check_all

__all__ = ["PROFILES", "project_root", "find_notebooks", "load_profile", "run_notebook",
           "run_notebooks", "check_parameters", "NotebookFailed", "ParameterError", "ALONE"]

PROFILES = ("smoke", "ci", "paper")
VERSIONED = ("wna", "torch", "torchvision", "numpy", "scipy", "matplotlib", "papermill",
             "jupytext", "myst-nb", "jupyter-book")


class NotebookFailed(RuntimeError):
    """A notebook raised while executing."""


def project_root() -> Path:
    """The folder holding ``notebooks/`` (the repository root)."""
    here = Path.cwd()
    for p in (here, *here.parents):
        if (p / "notebooks" / "profiles").is_dir():
            return p
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "notebooks").is_dir():
        return pkg_root
    raise FileNotFoundError("no notebooks/profiles/ folder here or above; run from the project root")


def find_notebooks(names=(), root: Path | None = None) -> list[Path]:
    """The notebooks named (stem, file name or path); all of them when none."""
    root = root or project_root()
    folder = root / "notebooks"
    every = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not names:
        return every
    out = []
    for name in names:
        p = Path(name)
        candidates = [p, root / p, folder / p.name, folder / f"{p.stem}.py"]
        hit = next((c for c in candidates if c.suffix == ".py" and c.is_file()), None)
        if hit is None:
            known = ", ".join(q.stem for q in every)
            raise FileNotFoundError(f"no notebook {name!r} in {folder} (known: {known})")
        out.append(hit.resolve())
    return out


def load_profile(profile: str, root: Path | None = None) -> dict:
    """``{notebook stem: {parameter: value}}`` of a profile."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    root = root or project_root()
    path = root / "notebooks" / "profiles" / f"{profile}.yml"
    return yaml.safe_load(path.read_text()) or {}


def check_parameters(path: Path, profile: str = "ci", overrides: dict | None = None,
                     root: Path | None = None) -> dict:
    """The parameters ``run_notebook(path, profile, overrides)`` would inject, each checked
    against the notebook's ``parameters`` cell (see :mod:`wna._params`); raises
    :class:`ParameterError` for a name the notebook lacks or a value its default's type refuses."""
    root = root or project_root()
    path = Path(path)
    params = check_all(path, dict(load_profile(profile, root).get(path.stem) or {}),
                       f"profile {profile!r} (notebooks/profiles/{profile}.yml)")
    params.update(check_all(path, dict(overrides or {}), "override"))
    params["profile"] = profile
    return params


def _versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _hide_parameters(nb) -> None:
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")


def run_notebook(path: Path, profile: str = "ci", overrides: dict | None = None,
                 out_dir: Path | None = None, root: Path | None = None,
                 progress: bool = True) -> Path:
    """Execute one notebook; return the executed ``.ipynb`` path.

    The profile's parameters and ``overrides`` are checked first (see
    :func:`check_parameters`): a bad one raises :class:`ParameterError` before
    anything is executed or written.
    """
    import jupytext
    import nbformat
    import papermill

    root = root or project_root()
    path = Path(path)
    params = check_parameters(path, profile, overrides, root)
    out_dir = Path(out_dir) if out_dir else root / "book" / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)

    nb = jupytext.read(path)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    nb.metadata.setdefault("language_info", {"name": "python"})
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ValueError(f"{path.name} has no cell tagged 'parameters'")
    src = out_dir / f".{path.stem}.src.ipynb"
    out = out_dir / f"{path.stem}.ipynb"
    nbformat.write(nb, src)
    t0 = time.perf_counter()
    # Figures must render inline whatever backend the caller's environment names.
    saved_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        papermill.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3",
                                   cwd=str(root), progress_bar=progress, log_output=False)
    except papermill.PapermillExecutionError as exc:
        raise NotebookFailed(f"{path.name} failed at profile {profile!r} (see {out}):\n"
                             f"{exc.ename}: {exc.evalue}") from exc
    finally:
        src.unlink(missing_ok=True)
        if saved_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved_backend
    wall = time.perf_counter() - t0
    record = {"notebook": path.name, "profile": profile, "parameters": params,
              "wall_seconds": round(wall, 2), "versions": _versions(),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    done = nbformat.read(out, as_version=4)
    _hide_parameters(done)
    done.metadata["wna"] = record
    nbformat.write(done, out)
    (out_dir / f"{path.stem}.run.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


ALONE = ("performance",)
"""Notebooks that time this machine: with ``jobs > 1`` they run after the others, by themselves."""


def run_notebooks(names=(), profile: str = "ci", overrides: dict | None = None,
                  out_dir: Path | None = None, progress: bool = True, jobs: int = 1) -> list[Path]:
    """Execute notebooks; stop at the first that fails.

    Each override goes to the notebooks that have that parameter; one that none
    of them has is refused. Every notebook's parameters are checked (see
    :func:`check_parameters`) before the first one runs.

    ``jobs=1`` runs them in order. ``jobs=N`` runs N side by side, each in its
    own lane of ``cores // N`` cores and as many torch threads (the longest by
    the last recorded wall time first), then the notebooks of :data:`ALONE`
    one by one. Their numbers are the same either way: the package's results
    do not depend on the thread count, and a model two notebooks need is
    trained once (the second waits for it, see :func:`wna.paths.cache_lock`).
    Progress bars are off when notebooks run side by side. On a machine where
    each notebook already keeps every core busy (2 cores, say) it is slower.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    root = project_root()
    notebooks = find_notebooks(names, root)
    per_notebook = _split_overrides(notebooks, dict(overrides or {}))
    for nb in notebooks:
        check_parameters(nb, profile, per_notebook[nb], root)
    out_dir = Path(out_dir) if out_dir else root / "book" / "executed"
    side_by_side = [nb for nb in notebooks if nb.stem not in ALONE] if jobs > 1 else []
    outs = {}
    if len(side_by_side) > 1:
        outs = _run_side_by_side(side_by_side, profile, per_notebook, out_dir, root, jobs)
    for nb in notebooks:
        if nb not in outs:
            outs[nb] = _timed_run(nb, profile, per_notebook[nb], out_dir, root, progress)
    return [outs[nb] for nb in notebooks]


def _timed_run(nb: Path, profile: str, overrides: dict, out_dir: Path, root: Path,
               progress: bool = False) -> Path:
    t0 = time.perf_counter()
    print(f"[wna run] {nb.name} (profile {profile})", file=sys.stderr, flush=True)
    out = run_notebook(nb, profile, overrides, out_dir, root, progress)
    print(f"[wna run] {nb.name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


def _cores() -> list[int]:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _lane(counter, cores: list[int], threads: int) -> None:
    """In a worker process: its own ``threads`` of ``cores`` (the kernels it starts inherit them) and
    torch on that many threads. Lanes on disjoint cores do not slow each other's OpenMP threads (a
    training run keeps its fixed thread count, see :data:`wna.zoo.TRAIN_THREADS`, on its lane's cores)."""
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    start = (k * threads) % len(cores)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, (cores + cores)[start:start + threads])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _last_wall(nb: Path, out_dir: Path) -> float:
    try:
        return float(json.loads((out_dir / f"{nb.stem}.run.json").read_text())["wall_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _run_side_by_side(notebooks: list[Path], profile: str, per_notebook: dict, out_dir: Path,
                      root: Path, jobs: int) -> dict:
    """Run ``notebooks`` in ``jobs`` worker processes; ``{notebook: executed path}``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = _cores()
    threads = max(1, len(cores) // jobs)
    order = sorted(notebooks, key=lambda nb: -_last_wall(nb, out_dir))  # stable: given order if unknown
    print(f"[wna run] {len(order)} notebooks, {jobs} side by side on {threads} core(s) each",
          file=sys.stderr, flush=True)
    outs = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(order)), mp_context=ctx, initializer=_lane,
                             initargs=(ctx.Value("i", 0), cores, threads)) as pool:
        futures = {pool.submit(_timed_run, nb, profile, per_notebook[nb], out_dir, root): nb
                   for nb in order}
        try:
            for done in as_completed(futures):
                outs[futures[done]] = done.result()
        except BaseException:
            for f in futures:
                f.cancel()  # the ones not started; those running finish before the pool closes
            raise
    return outs


def _split_overrides(notebooks: list[Path], overrides: dict) -> dict:
    """``{notebook: the overrides it has a parameter for}``; a name none has is refused."""
    from ._params import defaults

    if len(notebooks) == 1:  # check_parameters names the notebook and its parameters
        return {notebooks[0]: overrides}
    have = {nb: defaults(nb) for nb in notebooks}
    for name in overrides:
        if name != "profile" and not any(name in params for params in have.values()):
            import difflib

            every = sorted({p for params in have.values() for p in params} - {"profile"})
            close = difflib.get_close_matches(name, every, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ParameterError(f"override: none of the {len(notebooks)} notebooks has a parameter "
                                 f"{name!r}{hint} (their parameters: {', '.join(every)})")
    return {nb: {k: v for k, v in overrides.items() if k == "profile" or k in have[nb]} for nb in notebooks}
