"""The package's imports form no cycle, counting function-level imports as well as module-level ones.

A cycle hidden in a function-level import still ties the modules together: neither can be
understood, tested or reused without the other. Imports under ``if TYPE_CHECKING:`` never
run and are not counted. Two known cycles are listed below, each with the reason it is
still there; any other strongly connected component fails the test, and so does either
known one growing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

KNOWN_CYCLES: dict[str, frozenset[str]] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, but those that run only for the type checker."""
    for node in ast.iter_child_nodes(tree):
        typing_only = isinstance(node, ast.If) and _is_type_checking(node.test)
        for child in node.orelse if isinstance(node, ast.If) and typing_only else [node]:
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from _import_nodes(child)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in modules else base)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm: every component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "gateway.storage.local" in graph["gateway.storage"]  # imported inside make_store
    assert "gateway.api.content" in graph["gateway.app"]


def test_no_import_cycles_but_the_known_ones() -> None:
    unexplained = [
        sorted(component)
        for component in strongly_connected(import_graph())
        if not any(component <= known for known in KNOWN_CYCLES.values())
    ]
    assert unexplained == []


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert strongly_connected(graph) == [frozenset({"a", "b", "c"})]


WEB = ("flask", "werkzeug")
DOMAIN = ("gateway.services", "gateway.events", "gateway.authz", "gateway.caller", "gateway.paging")


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif node.module and not node.level:
            names.add(node.module)
    return names


def test_the_domain_does_not_know_the_web_framework() -> None:
    """Services, authorisation and the audit-recording API import neither Flask nor Werkzeug."""
    offenders = {
        name: sorted(n for n in _imported_names(path) if n.split(".")[0] in WEB)
        for name, path in _modules().items()
        if name.startswith(DOMAIN)
    }
    assert {name: found for name, found in offenders.items() if found} == {}
