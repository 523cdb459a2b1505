"""The package's import structure: every module imports on its own, the imports between modules form no
circle, and no module imports another module's private (``_``-prefixed) names.

The graph is read from the source (imports inside functions count too: a lazy import that closes a
circle is still a circle), so a circle that returns fails here before it fails at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wna

ROOT = Path(wna.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import of a ``wna`` module in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "wna"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "wna":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((sub, None) if sub in MODULES else (target, a.name))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        # a module's own package (wna) is imported first by Python: not an edge of the module's making
        graph[name] = {m for m, _ in _imports(name, path) if m in MODULES and m != name and m != "wna"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_graph_reader_sees_a_circle_and_a_private_name():
    """The checks below can fail: a made-up circle is found, a private import is named."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert ("wna.zoo", "_secret") in _imports("wna.x", _write("from .zoo import _secret\n"))
    assert ("wna.paths", None) in _imports("wna.x", _write("def f():\n    from . import paths\n"))


def _write(text: str) -> Path:
    import tempfile
    path = Path(tempfile.mkdtemp()) / "x.py"
    path.write_text(text)
    return path


def test_no_import_circle():
    assert _cycle(_graph()) is None, f"import circle: {' -> '.join(_cycle(_graph()))}"


def test_no_module_imports_another_modules_private_names():
    bad = [f"{name} imports {target}.{item}" for name, path in MODULES.items()
           for target, item in _imports(name, path)
           if item and item.startswith("_") and not item.startswith("__") and target != name]
    assert not bad, "\n".join(bad)


def test_every_module_imports_on_its_own():
    """Each module is imported first, in a fresh ``wna``: one subprocess, ``wna*`` dropped from
    ``sys.modules`` between modules (torch stays loaded, so this takes seconds, not minutes)."""
    code = ("import importlib, sys\nbad = []\n"
            f"for name in {sorted(m for m in MODULES if not m.endswith('__main__'))!r}:\n"
            "    for m in [m for m in sys.modules if m == 'wna' or m.startswith('wna.')]:\n"
            "        del sys.modules[m]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as exc:\n        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("limit", [420])
def test_no_module_is_oversized(limit):
    """One idea a module: none grows far past about 400 lines (split along dependencies)."""
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > limit}
    assert not long, long
