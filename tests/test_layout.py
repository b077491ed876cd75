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


def _modules(roots: dict[str, Path]) -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg, folder in roots.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join([pkg, *(parts[:-1] if is_pkg else parts)])] = (f, is_pkg)
    return out


def import_graph(roots: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """module -> the modules of the packages it imports (anywhere in its body)."""
    mods = _modules(roots or {pkg: REPO / folder for pkg, folder in ROOTS.items()})
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


def test_the_checker_sees_a_function_level_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    assert _cycles(import_graph({"pkg": tmp_path})) == [["pkg.a", "pkg.b"]]


def test_no_import_circle_but_the_registry() -> None:
    graph = import_graph()
    assert "spaner.search.engine" in graph and "spaner.model.network" in graph
    assert _cycles(graph) == ALLOWED
    # the service's state holds data; activation and the registry act on it
    assert not graph["spaner.app.state"] & {"spaner.app.activation", "spaner.app.model_registry"}


def test_the_library_stages_are_folders() -> None:
    for stage in ("model", "training", "evaluation", "search", "ingest", "datasets", "cli"):
        assert (REPO / "spaner" / stage / "__init__.py").is_file(), stage
    loose = sorted(p.stem for p in (REPO / "spaner").glob("*.py"))
    assert loose == ["__init__", "demo", "errors", "modality", "pipeline", "profiles"]
