"""The shape of the package (docs/layout.md): short functions, no import cycles, and the
dependencies pyproject.toml declares are those the package imports."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "msrgb"
MAX_FUNCTION_LINES = 60

#: import name -> distribution name on PyPI, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def imports_of(tree: ast.Module) -> list[str]:
    """Every module imported anywhere in ``tree``, also inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            if node.module == "msrgb":
                found += [f"msrgb.{alias.name}" for alias in node.names]
    return found


def test_no_function_is_longer_than_60_lines():
    long = [
        f"msrgb/{name}.py:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def internal_graph() -> dict[str, set[str]]:
    trees = modules()
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        used = {m.split(".")[1] for m in imports_of(tree) if m.startswith("msrgb.")}
        graph[name] = {m for m in used if m in trees and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles_even_inside_functions():
    assert find_cycle(internal_graph()) is None, " -> ".join(find_cycle(internal_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_pyproject_declares_what_the_package_imports():
    """Every third-party module msrgb imports is a declared dependency, and every declared
    dependency is imported (a test-only library belongs to requirements-test.txt)."""
    declared = {
        dep.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower()
        for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    imported = set()
    for tree in modules().values():
        for name in imports_of(tree):
            top = name.split(".")[0]
            if top != "msrgb" and top not in sys.stdlib_module_names:
                imported.add(DISTRIBUTIONS.get(top, top).lower())
    assert imported - declared == set(), f"imported but not declared: {sorted(imported - declared)}"
    assert declared - imported == set(), f"declared but not imported: {sorted(declared - imported)}"
