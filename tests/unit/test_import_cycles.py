"""No import cycle anywhere in src/cnnlab, imports inside functions counted (issue 16, item 5).

A cycle hidden by a function-level import (ablate -> worker -> search -> ablate, once) still ties
the modules together: none can be understood, tested or changed alone. The graph is built from
every module's syntax tree, so no module is imported to check it:

- every `import` and `from ... import` anywhere in a module counts, in functions too;
- `from cnnlab.x import y` where cnnlab/x/y is a module counts as an import of that module,
  else of cnnlab.x; relative imports are resolved against the importing module's package;
- importing cnnlab.x.y also runs the package __init__ files above it, but those edges are not
  counted: Python initializes a package before its submodules, so they cannot form a cycle of
  half-initialized modules, and counting them would make every `from cnnlab import ...` inside
  the package a false cycle through cnnlab/__init__.py;
- imports inside a module-level `__getattr__` of a package `__init__` are not counted: that is
  the lazy re-export (PEP 562) that lets `cnnlab.train` exist without importing torch at
  `import cnnlab`, and it runs only after both sides are fully imported;
- imports under `if TYPE_CHECKING:` are not counted: they never run, they only name the types
  of annotations, which `from __future__ import annotations` leaves unevaluated.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cnnlab

PACKAGE_ROOT = Path(cnnlab.__file__).parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def lazy_export_nodes(tree: ast.Module, is_package: bool) -> set[int]:
    """The ids of the nodes inside a package __init__'s module-level __getattr__."""
    if not is_package:
        return set()
    return {id(node) for statement in tree.body
            if isinstance(statement, ast.FunctionDef) and statement.name == "__getattr__"
            for node in ast.walk(statement)}


def type_checking_nodes(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside `if TYPE_CHECKING:` blocks, which never run."""
    return {id(node) for statement in ast.walk(tree)
            if isinstance(statement, ast.If) and (
                (isinstance(statement.test, ast.Name) and statement.test.id == "TYPE_CHECKING")
                or (isinstance(statement.test, ast.Attribute)
                    and statement.test.attr == "TYPE_CHECKING"))
            for branch in statement.body for node in ast.walk(branch)}


def imported_modules(tree: ast.Module, name: str, is_package: bool,
                     modules: dict[str, Path], package: str) -> set[str]:
    """The package's modules that the module `name` imports, anywhere in it."""
    skipped = lazy_export_nodes(tree, is_package) | type_checking_nodes(tree)
    own_package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import cnnlab.a.b` names the deepest module that exists.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and (target == package or target.startswith(package + ".")):
                found.add(target)
    found.discard(name)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = imported_modules(tree, name, path.name == "__init__.py", modules, package)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        # Recursion depth is bounded by the number of modules (about a hundred).
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_cnnlab_imports_itself_through_others():
    graph = import_graph(PACKAGE_ROOT, "cnnlab")
    assert len(graph) > 50, "the walk found too few modules to be checking the package"
    found = cycles(graph)
    assert not found, "import cycles (imports inside functions count): " + "; ".join(
        " <-> ".join(component) for component in found)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "from pkg.sub import b\n",
        "sub/b.py": "def f():\n    from . import c\n",
        "sub/c.py": "def g():\n    import pkg.sub.a\n",
        "d.py": "from pkg.sub.a import name\n"})
    assert cycles(import_graph(package, "pkg")) == [["pkg.sub.a", "pkg.sub.b", "pkg.sub.c"]]


def test_lazy_re_exports_and_parent_packages_make_no_cycle(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": ("from pkg import errors\n\n"
                        "def __getattr__(name):\n    from pkg.train import train\n"
                        "    return train\n"),
        "errors.py": "",
        "train.py": "from pkg import __version__\nfrom pkg.errors import E\n"})
    graph = import_graph(package, "pkg")
    assert graph["pkg"] == {"pkg.errors"} and graph["pkg.train"] == {"pkg", "pkg.errors"}
    assert cycles(graph) == []
