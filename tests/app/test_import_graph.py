"""No import circles among the service's modules (module- and function-level imports).

State holds the data; the activation and the model registry act on it; start-up recovery is
its own module. A circle among them (state -> activation -> state) made each module's import
order matter; this walks every ``import`` statement of ``app/`` with :mod:`ast` (imports
inside functions too, which an import-time check would miss) and fails on any cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
PKG = "spaner.app"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join([PKG, *(parts[:-1] if is_pkg else parts)])
        out[name] = (f, is_pkg)
    return out


def import_graph(root: Path = APP) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (anywhere in its body)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, (f, is_pkg) in mods.items():
        pkg = name if is_pkg else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names]
                # `from . import x` names submodules; importing one's own package is no edge
                cands = [s for s in subs if s in mods] or [target]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in cands if c in mods and c != name and c != pkg)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_function_level_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    assert cycles(import_graph(tmp_path)) == [[f"{PKG}.a", f"{PKG}.b"]]


def test_no_import_circles_in_the_service() -> None:
    graph = import_graph()
    assert cycles(graph) == []
    state = f"{PKG}.state"
    assert not graph[state] & {f"{PKG}.activation", f"{PKG}.model_registry"}
