"""The shape of the package (docs/dev/architecture.md): subpackages by layer, each importing only
the layers below it; no import cycle; short modules and functions; every exception class in
errors.py; planning and Snakemake's own process load no numpy, GDAL or Pillow; the dependencies
pyproject.toml declares are those the package imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "msrgb"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400

#: import name -> distribution name on PyPI, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "zlib_ng": "zlib-ng", "pystac_client": "pystac-client"}

#: what each part of the package may import besides itself (top-level modules are parts of
#: their own); the order is the layers' from the bottom, as docs/dev/architecture.md draws it
ALLOWED = {
    "errors": set(),
    "version": set(),
    "storage": {"errors"},
    "radiometry": {"errors"},
    "config": {"errors", "radiometry"},
    "sources": {"errors", "storage", "radiometry"},
    "tile": {"radiometry"},
    "outputs": {"errors", "storage", "sources", "version"},
    "snakemake": {"errors", "storage", "outputs"},
    "planning": {"errors", "storage", "radiometry", "config", "sources", "outputs", "snakemake", "readers.__init__"},
    "readers": {"errors", "tile", "storage", "radiometry", "config", "sources"},
    "render": {"errors", "tile", "storage", "radiometry", "config", "outputs", "sources", "version"},
    "jobs": {"errors", "tile", "storage", "radiometry", "config", "sources", "outputs", "planning", "readers", "render", "version"},
    "export": {"errors", "storage", "config", "sources", "outputs", "planning", "version"},
    "engine": {"errors", "storage", "config", "sources", "outputs", "planning", "readers", "render", "jobs", "export"},
    "tools": {"errors", "storage", "config", "sources", "outputs", "planning", "readers", "render", "radiometry", "export"},
    "synth": {"config", "radiometry"},
    "api": {"errors", "tile", "storage", "config", "readers", "render", "jobs", "engine"},
    "cli": {"errors", "storage", "outputs", "tools"},
    "__main__": {"cli"},
    "__init__": {"api", "errors", "version"},
}

#: raises of exceptions that are not MsrgbError: (module, exception) and why they never reach a
#: user as they are
INTERNAL_RAISES = {
    ("msrgb/__init__.py", "AttributeError"),  # the module __getattr__ protocol
    ("msrgb/readers/tiff.py", "KeyError"),  # caught in msrgb.readers.tiff: GDAL reads the file
    ("msrgb/readers/tiff.py", "ValueError"),  # the same
    ("msrgb/sources/geotags.py", "ValueError"),  # caught by its callers: GDAL reads the file
    ("msrgb/render/pngenc.py", "ValueError"),  # a wrong call of the encoder (a bug, not input)
    ("msrgb/storage/files.py", "FileNotFoundError"),  # caught in msrgb.storage.files
    ("msrgb/storage/files.py", "OSError"),  # turned into OutputError by write_output's callers
    ("msrgb/storage/files.py", "kind"),  # OutputError or OutputFileError, chosen by the caller
    ("msrgb/storage/remote.py", "denied"),  # obstore's error, turned into InputError/PlanError
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    """The layer of a module: its subpackage, or a top-level module's own name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def runtime_imports(tree: ast.Module) -> list[str]:
    """Every module imported anywhere in ``tree``, also inside functions, but not under
    ``if TYPE_CHECKING:`` (annotations only) or ``if __name__ == "__main__":`` (a module of its
    own: ``python -m msrgb.tools.status`` imports msrgb.cli, which imports msrgb.tools.status)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(k in ast.unparse(node.test) for k in ("TYPE_CHECKING", "__main__")):
            skip |= {id(sub) for sub in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            if node.module.startswith("msrgb"):
                found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def internal_graph() -> dict[str, set[str]]:
    trees = modules()
    graph: dict[str, set[str]] = {}
    for name, (_, tree) in trees.items():
        graph[name] = {m for m in runtime_imports(tree) if m in trees and m != name}
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


def test_every_part_imports_only_the_layers_it_may():
    assert set(ALLOWED) >= {part_of(m) for m in modules()}, "a new part of the package: give it its rules"
    crossings = []
    for name, (path, tree) in modules().items():
        part = part_of(name)
        for imported in runtime_imports(tree):
            if not imported.startswith("msrgb.") and imported != "msrgb":
                continue
            target = part_of(imported) if imported != "msrgb" else "__init__"
            if target == part or imported == "msrgb.readers.lazy_scaled_bands" and "readers.__init__" in ALLOWED[part]:
                continue
            if target not in ALLOWED[part] and f"{target}.__init__" not in ALLOWED[part]:
                crossings.append(f"{path.relative_to(REPO)}: {part} imports {imported}")
    assert not crossings, "\n".join(sorted(set(crossings)))


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import:" in doc and len(doc) > 80, f"{init.relative_to(REPO)}: no docstring of its layer"
    assert len(list(PACKAGE.glob("*/__init__.py"))) >= 5


def test_no_module_over_400_lines_and_no_function_over_60():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in modules().values()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long
    big = [f"{p.relative_to(REPO)} ({n} lines)" for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, big


def test_every_exception_class_lives_in_errors_py_and_reaches_users_as_an_msrgb_error():
    import msrgb.errors as errors

    elsewhere = [
        f"{path.relative_to(REPO)}: {node.name}"
        for path, tree in modules().values()
        if path.name != "errors.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(b).endswith(("Error", "Exception")) for b in node.bases)
    ]
    assert not elsewhere, elsewhere
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, BaseException)]
    assert {c.__name__ for c in classes if not issubclass(c, errors.MsrgbError)} == {"ReadInBlocks"}
    raised = set()
    for path, tree in modules().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = ast.unparse(node.exc.func).rpartition(".")[2]
                cls = getattr(errors, name, None)
                if not (isinstance(cls, type) and issubclass(cls, errors.MsrgbError)) and name != "ReadInBlocks":
                    raised.add((str(path.relative_to(REPO)), name))
    factories = {"fail", "_fail", "unanswered", "clash_error"}  # functions that build an MsrgbError
    assert {r for r in raised if r[1] not in factories} == INTERNAL_RAISES


def test_planning_and_snakemakes_own_process_load_no_numpy_gdal_or_pillow(tmp_path: Path):
    """What Snakemake's main process imports (rules/*.smk) and a whole planning of the bundled
    sample: neither loads numpy, rasterio, Pillow or scikit-image, which only jobs need."""
    smk = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    imports = [
        line.split("#")[0].strip()
        for line in smk.splitlines()
        if line.startswith(("from msrgb", "import msrgb"))
    ]
    assert len(imports) >= 8
    code = "\n".join([
        "import sys", f"sys.path.insert(0, {str(REPO)!r})", *imports,
        "from msrgb.engine.run import load_config",
        "from msrgb.planning.prepare import plan_run",
        "from msrgb.planning.settings import Settings, Where",
        "from msrgb.readers import lazy_scaled_bands",
        f"config = load_config({{'output_dir': {str(tmp_path / 'out')!r}, 'input_dir': {str(REPO / 'sample' / 'eurosat')!r},"
        " 'products': ['truecolor', 'ndvi', 'swir']})",
        "prepared = plan_run(Settings.from_config(config), Where(parallel_jobs=2), lazy_scaled_bands)",
        "assert prepared.counts.images == 20, prepared.counts",
        "print(sorted(m for m in ('numpy', 'rasterio', 'PIL', 'skimage', 'osgeo') if m in sys.modules))",
    ])  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_pyproject_declares_what_the_package_imports():
    """Every third-party module msrgb imports is a declared dependency, and every declared
    dependency is imported (a test-only library belongs to requirements-test.txt)."""
    declared = {
        dep.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower()
        for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    imported = set()
    for _, tree in modules().values():
        for name in runtime_imports(tree):
            top = name.split(".")[0]
            if top != "msrgb" and top not in sys.stdlib_module_names:
                imported.add(DISTRIBUTIONS.get(top, top).lower())
    assert imported - declared == set(), f"imported but not declared: {sorted(imported - declared)}"
    assert declared - imported == set(), f"declared but not imported: {sorted(declared - imported)}"


def test_configuration_reference_is_the_schema():
    """docs/configuration.md is made from config/schema.json (python -m msrgb.tools.config_docs)
    and says every key, its default and its description."""
    from msrgb.tools.config_docs import reference

    assert (REPO / "docs" / "configuration.md").read_text() == reference(json.loads((REPO / "config" / "schema.json").read_text()))


def test_public_api_from_the_package():
    import numpy as np

    import msrgb
    import msrgb.api

    assert set(msrgb.__all__) <= set(dir(msrgb.api)) | {"MsrgbError", "InputError", "ProductError"}
    ms = np.full((2, 2, 13), 2000, np.uint16)
    assert (msrgb.to_rgb(ms) == 127).all()
    assert issubclass(msrgb.ProductError, msrgb.MsrgbError)


def test_architecture_docs_name_every_module():
    text = (REPO / "docs" / "dev" / "architecture.md").read_text()
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")} | {"msrgb.__main__"}
    missing = [m for m in modules() if m not in packages and f"`{m}`" not in text and f"`{m.removeprefix('msrgb.')}`" not in text]
    assert not missing, f"docs/dev/architecture.md does not describe {missing}"
