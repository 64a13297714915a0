"""The layout's rules: no import cycle among weightwatch's modules, no module over 400 lines.

Imports are read with ``ast`` from every module of ``weightwatch/`` and of
``integrations/`` (installed as ``weightwatch.integrations``), those inside
functions included and those under ``if TYPE_CHECKING:`` left out (they never
run). ``from package import name`` counts as an import of ``package.name``
when that is a module, else of ``package``. A module importing a name from
its own ancestor package (``from . import __version__`` in weightwatch/recorder.py)
is not a cycle: Python initialises the package before any module inside it,
whatever the module imports; that the analysis' modules never import its public
API (``weightwatch.analysis``, their ancestor) is checked by the stage order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
#: Source folder -> the package it is installed as.
PACKAGES = {"weightwatch": "weightwatch", "integrations": "weightwatch.integrations"}


def module_files(root: Path, packages: dict[str, str]) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for folder, package in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            out[".".join([package, *parts])] = (path, is_init)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``modules`` it imports."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_init) in modules.items():
        package = name if is_init else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - (node.level - 1)])
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # ``import a.b.c`` of a name inside a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def without_ancestors(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` less the edges from a module to a package that contains it."""
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_among_weightwatch_modules():
    modules = module_files(ROOT, PACKAGES)
    assert "weightwatch.integrations.torch" in modules and "weightwatch.analysis.loading.loader" in modules
    graph = import_graph(modules)
    assert "weightwatch.analysis" in graph["weightwatch.integrations.ray"]  # the graph does see imports
    cycle = find_cycle(without_ancestors(graph))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_analysis_stages_import_one_way():
    """loading <- comparison <- classification <- rendering <- the public API <- cli; nothing below imports above."""
    order = ["weightwatch.analysis.loading", "weightwatch.analysis.comparison", "weightwatch.analysis.classification",
             "weightwatch.analysis.rendering", "weightwatch.analysis", "weightwatch.cli"]

    def stage(module: str) -> int | None:
        if module == "weightwatch.__main__":  # python -m weightwatch: the command line
            return order.index("weightwatch.cli")
        for i in range(len(order) - 1, -1, -1):
            if module == order[i] or module.startswith(order[i] + "."):
                return i
        return None

    wrong = []
    for module, targets in import_graph(module_files(ROOT, PACKAGES)).items():
        here = stage(module)
        for target in targets:
            there = stage(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} imports {target}")
            if here is None and there is not None and not module.startswith("weightwatch.integrations"):
                wrong.append(f"the core module {module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_finds_a_cycle_inside_a_function_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    graph = import_graph(module_files(tmp_path, {"pkg": "pkg"}))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == set()
    assert find_cycle(graph) is None
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n    return x\n")
    assert find_cycle(import_graph(module_files(tmp_path, {"pkg": "pkg"}))) == ["pkg.a", "pkg.b", "pkg.a"]
    (pkg / "b.py").write_text("import pkg.a.x\n")  # a name inside pkg.a: an import of pkg.a
    assert find_cycle(import_graph(module_files(tmp_path, {"pkg": "pkg"}))) == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize("folder", ["weightwatch", "integrations"])
def test_no_module_over_400_lines(folder):
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / folder).rglob("*.py")}
    assert sizes, f"no modules found in {folder}/"
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these modules (at most {MAX_LINES} lines each): {too_long}"
