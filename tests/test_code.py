"""The shape of the package (docs/layout.md): short functions, no import cycles, and the
dependencies pyproject.toml declares are those the package imports."""

from __future__ import annotations

import ast
import json
import sys
import tomllib

from conftest import REPO

PACKAGE = REPO / "msrgb"
MAX_FUNCTION_LINES = 60

#: import name -> distribution name on PyPI, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "zlib_ng": "zlib-ng", "pystac_client": "pystac-client"}


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``: runs as the module ``__main__``, a module of its own, so
    its imports are no cycle (``python -m msrgb.tools.status`` imports msrgb.cli, which imports
    msrgb.tools.status)."""
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def imports_of(tree: ast.Module) -> list[str]:
    """Every module imported anywhere in ``tree``, also inside functions."""
    found = []
    main_blocks = [n for n in tree.body if is_main_block(n)]
    skip = {id(sub) for block in main_blocks for sub in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
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


def test_configuration_docs_list_every_setting_of_the_schema_with_its_default():
    """docs/configuration.md's table and config/schema.json name the same keys, with the same
    defaults where the schema has a number or a word."""
    schema = json.loads((REPO / "config" / "schema.json").read_text())["properties"]
    documented: dict[str, str] = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            defaults = [d.strip() for d in cells[1].split(",")]
            for i, key in enumerate(k.strip().strip("`") for k in cells[0].split(",")):
                documented[key] = defaults[i] if len(defaults) > i else cells[1]
    assert sorted(documented) == sorted(schema)
    for key, spec in schema.items():
        value = spec.get("default")
        if isinstance(value, bool):
            assert documented[key].strip("`") == str(value).lower(), key
        elif isinstance(value, (int, float, str)) and key not in ("band_pattern",):
            assert documented[key].strip("`") == str(value), key


def test_public_api_from_the_package():
    import numpy as np

    import msrgb
    import msrgb.api

    assert set(msrgb.__all__) <= set(dir(msrgb.api)) | {"MsrgbError", "InputError", "ProductError"}
    ms = np.full((2, 2, 13), 2000, np.uint16)
    assert (msrgb.to_rgb(ms) == 127).all()
    assert issubclass(msrgb.ProductError, msrgb.MsrgbError)


def test_layout_docs_name_every_module():
    text = (REPO / "docs" / "layout.md").read_text()
    missing = [m for m in modules() if not m.startswith("__") and f"`msrgb.{m}`" not in text]
    assert not missing, f"docs/layout.md does not describe {missing}"
