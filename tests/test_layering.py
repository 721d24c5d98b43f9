"""The core's layering, read from the source: `spzoo/` (layers, blocks,
models, data, metrics, zoo, the command line) never imports the packages
built on it (`spzoo.tuners`, `spzoo.export`), and its modules import each
other without a cycle.

Only the `spzoo/` source folder is walked: `tuners/` and `export/` install
as `spzoo.tuners` and `spzoo.export` and may import the core. The command
line reaches their commands through the `spzoo.commands` entry points
(`spzoo.cli.command_plugins`), not through an import.
"""

import ast
from pathlib import Path

import pytest

import spzoo

SOURCE = Path(spzoo.__file__).resolve().parent
OUTER = ("spzoo.tuners", "spzoo.export")


def module_name(path: Path) -> str:
    parts = ("spzoo", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for path in sorted(SOURCE.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def is_outer(name: str) -> bool:
    return any(name == outer or name.startswith(outer + ".") for outer in OUTER)


def package_of(name: str) -> str:
    """The package a module's relative imports start from."""
    path = MODULES[name]
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(name: str, node: ast.AST) -> list[str]:
    """The dotted module names an import statement names: for `from a import
    b`, `a.b` when that is a module (or an outer package), else `a`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = package_of(name).split(".")
        base = base[: len(base) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module
    names = []
    for alias in node.names:
        full = f"{module}.{alias.name}"
        outer = is_outer(full) and not is_outer(module)  # from spzoo import tuners
        names.append(full if full in MODULES or outer else module)
    return names


def imports(name: str, module_level: bool) -> list[tuple[int, str]]:
    """`(line, module)` of the imports of module `name`: all of them, or
    only those that run when it is imported (not inside a function)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((child.lineno, n) for n in imported_names(name, child))
            visit(child)

    visit(tree)
    return found


def known_module(imported: str) -> str | None:
    """The spzoo source module an import loads (its longest known prefix)."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported spzoo module: line}, module-level imports only."""
    graph = {}
    for name in MODULES:
        edges = {}
        for line, imported in imports(name, module_level=True):
            target = known_module(imported)
            if target is not None and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a path `[a, b, ..., a]`, or None."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return (
        " -> ".join(
            f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)
        )
        + f" -> {cycle[-1]}"
    )


def test_the_source_folder_is_walked():
    assert {"spzoo.cli", "spzoo.io", "spzoo.zoo.hub", "spzoo.models"} <= set(MODULES)
    assert not any(is_outer(name) for name in MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_core_never_imports_tuners_or_export(name):
    outer = [
        f"line {line}: {imported}"
        for line, imported in imports(name, module_level=False)
        if is_outer(imported)
    ]
    assert not outer, (
        f"{MODULES[name]} imports a package built on the core "
        f"({', '.join(OUTER)}): {'; '.join(outer)}"
    )


def test_no_import_cycle_among_spzoo_modules():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {describe(cycle, graph)}"


def test_the_cycle_finder_reports_a_path():
    graph = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 7}, "d": {}}
    cycle = find_cycle(graph)
    assert cycle == ["a", "b", "c", "a"]
    assert describe(cycle, graph) == "a (line 3) -> b (line 5) -> c (line 7) -> a"
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


# tensorflow-io 0.37's native ops do not load on TensorFlow 2.21; only these
# pure-Python functions (thin wrappers over `tf.signal`) may be used.
TFIO_WORKING = {"tfio.audio.spectrogram", "tfio.audio.melscale"}


def test_only_the_working_tensorflow_io_functions_are_used():
    used = set()
    roots = [SOURCE, SOURCE.parent / "tuners", SOURCE.parent / "export"]
    for path in (p for root in roots for p in sorted(root.rglob("*.py"))):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                if module.startswith("tensorflow_io") or (
                    not module and any(n.startswith("tensorflow_io") for n in names)
                ):
                    assert names == ["tensorflow_io"] and not module, (
                        f"{path}: import only `tensorflow_io as tfio`"
                    )
            if isinstance(node, ast.Attribute) and isinstance(
                node.value, ast.Attribute
            ):
                if (
                    isinstance(node.value.value, ast.Name)
                    and node.value.value.id == "tfio"
                ):
                    used.add(f"tfio.{node.value.attr}.{node.attr}")
    assert used and used <= TFIO_WORKING, used - TFIO_WORKING
