"""The house's layout: no import circles anywhere in the installed packages (module- and
function-level imports, type-checking ones too), apart from the encoder registry, which
registers its built-ins itself."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {
    "spaner": "spaner",
    "spaner.encoders": "encoders",
    "spaner.index": "index",
    "spaner.app": "app",
}
ALLOWED = [["spaner.encoders.builtin", "spaner.encoders.registry"]]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg, folder in ROOTS.items():
        for f in (REPO / folder).rglob("*.py"):
            parts = list(f.relative_to(REPO / folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join([pkg, *(parts[:-1] if is_pkg else parts)])] = (f, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
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
                cands = [s for s in subs if s in mods] or [target]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in cands if c in mods and c not in (name, pkg))
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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


def test_the_checker_sees_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_import_circle_but_the_registry() -> None:
    graph = import_graph()
    assert "spaner.search.engine" in graph and "spaner.model.network" in graph
    assert _cycles(graph) == ALLOWED


def test_the_library_stages_are_folders() -> None:
    for stage in ("model", "training", "evaluation", "search", "ingest", "datasets", "cli"):
        assert (REPO / "spaner" / stage / "__init__.py").is_file(), stage
    loose = sorted(p.stem for p in (REPO / "spaner").glob("*.py"))
    assert loose == ["__init__", "demo", "errors", "modality", "pipeline", "profiles"]
