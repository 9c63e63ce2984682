"""Import hygiene of the jaxcam package.

(a) No import cycles between jaxcam's modules, function-level imports included (a
    function-level import must not be a way around a cycle).
(b) ``import jaxcam.train`` (and ``jaxcam``, ``jaxcam.runs``, ``jaxcam.checkpoints``)
    does not import ``tensorflow_datasets``.
(c) No module of the package is longer than ``MAX_LINES`` lines, except the listed ones.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jaxcam"
PACKAGE_DIR = REPO_ROOT / PACKAGE

MAX_LINES = 500
#: Modules allowed over MAX_LINES for now: path (from the repository root) -> reason.
#: An entry is an error once its file is gone or short enough: remove it then.
LONG_FILES_ALLOWED: dict[str, str] = {}

# ----------------------------------------------------------------------------------
# (a) The import graph.
#
# An edge A -> B means: module A's source imports module B (``import B``, ``from B
# import name``, or ``from P import B`` when ``P.B`` is a module), at module level or
# inside a function or class body. Only ``if TYPE_CHECKING:`` blocks are skipped: they
# never run.
#
# Package ``__init__`` edges: importing ``jaxcam.x.y`` first runs ``jaxcam/__init__``
# and ``jaxcam/x/__init__``, but these implicit child -> parent steps are NOT edges.
# Python runs a parent before its children, so a parent's ``__init__`` importing its
# own submodules (re-exporting their names) is the normal layout, not a cycle. What IS
# an edge is a module naming its parent package in an import statement (``from jaxcam
# import __version__``, ``from jaxcam.models import bind`` inside jaxcam.models.*): it
# reads names from a package whose ``__init__`` may still be running, so together with
# the parent's import of that module (direct or through others) it is a cycle. A parent
# -> child edge (``__init__`` importing a submodule) is an ordinary edge.

Edge = tuple[str, str]


def _reraise(name: str) -> None:
    raise  # re-raises: walk_packages calls this inside its except block


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (source file, is a package)."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    modules = {PACKAGE: (Path(spec.origin), True)}
    # walk_packages imports the subpackages (to read their __path__), not the modules;
    # a subpackage that fails to import fails the test instead of hiding its modules.
    walk = pkgutil.walk_packages(
        spec.submodule_search_locations, prefix=f"{PACKAGE}.", onerror=_reraise
    )
    for info in walk:
        folder = Path(info.module_finder.path)  # type: ignore[union-attr]
        last = info.name.rpartition(".")[2]
        path = folder / last / "__init__.py" if info.ispkg else folder / f"{last}.py"
        modules[info.name] = (path, info.ispkg)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _known(name: str, modules: set[str]) -> str | None:
    """``name`` or its longest prefix that is a module of the package (None: outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imported_modules(
    source: str, module: str, is_package: bool, modules: Iterable[str]
) -> dict[str, int]:
    """The package modules that ``source`` (the text of ``module``) imports -> line of the
    first such import. ``from P import y`` counts as importing ``P.y`` when that is a
    module, else ``P``; relative imports are resolved against ``module``."""
    modules = set(modules)
    found: dict[str, int] = {}
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in targets:
            known = _known(target, modules)
            if known is not None:  # the walk is not in source order: keep the first line
                found[known] = min(found.get(known, node.lineno), node.lineno)
    return found


def import_graph() -> dict[Edge, int]:
    """Edges (importer, imported) between the package's modules -> line of the import."""
    modules = package_modules()
    edges = {}
    for name, (path, is_package) in modules.items():
        imported = imported_modules(path.read_text(), name, is_package, modules)
        edges |= {(name, target): line for target, line in imported.items()}
    return edges


def import_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component that has a cycle
    (Tarjan's algorithm, then a shortest path back to the component's first module)."""
    successors: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        successors.setdefault(source, []).append(target)
        successors.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in successors[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            visit(node)

    cycles = []
    for component in components:
        start = component[0]
        if len(component) == 1 and start not in successors[start]:
            continue
        members = set(component)
        came_from: dict[str, str] = {}  # module -> the module it was first reached from
        queue = deque([start])
        while start not in came_from:  # breadth-first inside the component, back to start
            node = queue.popleft()
            for nxt in successors[node]:
                if nxt in members and nxt not in came_from:
                    came_from[nxt] = node
                    queue.append(nxt)
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(came_from[path[-1]])
        cycles.append(path[::-1])
    return sorted(cycles)


def describe_cycle(cycle: list[str], lines: Mapping[Edge, int]) -> str:
    steps = [cycle[0]]
    for source, target in zip(cycle, cycle[1:], strict=False):
        steps.append(f"-> {target} (line {lines[source, target]} of {source})")
    return " ".join(steps)


def test_imported_modules_resolves_each_import_form():
    modules = {"jaxcam", "jaxcam.data", "jaxcam.data.folders", "jaxcam.models", "jaxcam.x"}
    source = textwrap.dedent(
        """
        import os
        import jaxcam
        from jaxcam.data import folders, ArraySplit
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from jaxcam.x import skipped
        def later():
            from .. import models
            from jaxcam.models.base import bind
        """
    )
    found = imported_modules(source, "jaxcam.data.sub", False, modules)
    # Lines count from the leading newline of the text: "import jaxcam" is line 3.
    assert found == {
        "jaxcam": 3,
        "jaxcam.data.folders": 4,  # a module: the edge goes to it
        "jaxcam.data": 4,  # ArraySplit is a name: the edge goes to the package
        "jaxcam.models": 9,  # relative, inside a function; jaxcam.models.base -> nearest
    }


def test_import_cycles_finds_each_cycle_once():
    # a -> b -> c -> a is one cycle; d -> d a self-import; c -> e -> f no cycle.
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "e"), ("e", "f"), ("d", "d")]
    assert import_cycles(edges) == [["a", "b", "c", "a"], ["d", "d"]]
    # Two cycles through one module share a component: the shortest from its first
    # module (a -> b -> a) is reported.
    assert import_cycles([("a", "b"), ("b", "a"), ("b", "c"), ("c", "a")]) == [["a", "b", "a"]]
    assert import_cycles([("pkg", "pkg.sub"), ("pkg.sub", "other")]) == []


def test_the_package_has_no_import_cycles():
    lines = import_graph()
    assert ("jaxcam.train", "jaxcam.runs") in lines  # the graph is read from the sources
    cycles = import_cycles(lines)
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(c, lines) for c in cycles)


# ----------------------------------------------------------------------------------
# (b) Training without TensorFlow Datasets.


def test_training_modules_do_not_import_tensorflow_datasets():
    code = textwrap.dedent(
        """
        import sys
        import jaxcam.train, jaxcam.runs, jaxcam.checkpoints, jaxcam
        loaded = sorted(name for name in sys.modules if name.startswith("jaxcam"))
        print(jaxcam.__file__)
        print(" ".join(loaded))
        assert "tensorflow_datasets" not in sys.modules, loaded
        """
    )
    python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    package_file, loaded = result.stdout.splitlines()[-2:]
    assert Path(package_file).resolve() == PACKAGE_DIR / "__init__.py"  # this checkout's
    assert {"jaxcam.train", "jaxcam.runs", "jaxcam.checkpoints"} <= set(loaded.split())


# ----------------------------------------------------------------------------------
# (c) Module length.


def test_no_module_is_too_long():
    lengths = {
        path.relative_to(REPO_ROOT).as_posix(): len(path.read_text().splitlines())
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
    }
    problems = [
        f"{path}: {count} lines (limit {MAX_LINES})"
        for path, count in lengths.items()
        if count > MAX_LINES and path not in LONG_FILES_ALLOWED
    ]
    problems += [
        f"{path}: allowed ({reason}) but now {lengths.get(path, 'missing')}: remove the entry"
        for path, reason in LONG_FILES_ALLOWED.items()
        if lengths.get(path, 0) <= MAX_LINES
    ]
    assert not problems, "module length:\n" + "\n".join(problems)
