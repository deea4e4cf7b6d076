"""The package's import graph: no cycle between modules, and every arrow points down the
layers of docs/architecture.md (the folder map), so each room can be read, tested and
changed without the ones above it.

Imports are read from the source (top-level and inside functions alike: a lazy import is
still a dependency); ``if TYPE_CHECKING:`` blocks are not imports at run time."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "pipeline"

# Each room and the layer it sits in: a module may import only from rooms of a lower
# layer, or from its own room. The order is the order data flows (docs/architecture.md).
LAYERS: dict[str, int] = {
    "pipeline": 0,  # the package's __init__: its version
    "pipeline.errors": 0,
    "pipeline.core": 1,
    "pipeline.config": 1,
    "pipeline.storage": 1,
    "pipeline.faults": 1,
    "pipeline.steps": 1,
    "pipeline.layout": 2,
    "pipeline.metrics": 2,
    "pipeline.wrapper": 2,
    "pipeline.sampledata": 2,
    "pipeline.executors": 3,
    "pipeline.warehouse": 3,
    "pipeline.manifest": 4,
    "pipeline.worker": 4,
    "pipeline.regress": 4,
    "pipeline.compare": 4,
    "pipeline.scheduler_metrics": 4,
    "pipeline.tasks": 5,
    "pipeline.status": 6,
    "pipeline.console": 6,
    "pipeline.report": 7,
    "pipeline.cli": 8,
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``path`` imports."""

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text())]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names if a.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else owner(str(node.module)))
        pending.extend(ast.iter_child_nodes(node))
    found.discard("")
    return found


def _room(module: str) -> str:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return module


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_has_a_room() -> None:
    unplaced = sorted(m for m in _modules() if not any(
        m == room or m.startswith(room + ".") for room in LAYERS if room != "pipeline"
    ) and m != "pipeline")  # fmt: skip
    assert not unplaced, f"modules in no room of LAYERS (add them, with their layer): {unplaced}"


def test_no_upward_import() -> None:
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _room(a) != _room(b) and LAYERS[_room(b)] >= LAYERS[_room(a)]
    )
    assert not upward, "imports that point up or sideways between rooms:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, f"modules that import each other (directly or round a loop): {cycles}"


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The reader itself: a lazy import counts, a TYPE_CHECKING one does not."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from pipeline.cli import run\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pipeline.cli\n")
    modules = {"pipeline.cli": PACKAGE / "cli", "pipeline.cli.run": PACKAGE / "cli" / "run.py"}
    assert _imports(a, modules) == {"pipeline.cli.run"}
    assert _imports(b, modules) == set()
