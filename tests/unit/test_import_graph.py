"""No import cycles among our own modules (release_orchestrator and include.sandbox).

The graph is read from the source with `ast`, not by importing: every `import` and `from ... import`
of one of our modules counts, wherever it stands (module level, inside a function, under a condition),
because a function-level import only hides a cycle until that function runs.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {  # dotted package name -> its directory
    "release_orchestrator": REPO / "plugins" / "release_orchestrator",
    "include.sandbox": REPO / "include" / "sandbox",
}

Edge = tuple[str, int]  # (imported module, line of the import statement)


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every module of our packages (a package is its __init__.py)."""
    out = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _own(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted `name` that is one of our modules, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Our modules that `module` imports, at any level of its code, with the line of each import."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Edge] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself.
            names = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = _own(name, modules)
            if target is not None and target != module:
                out.append((target, node.lineno))
    return out


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """({module: {imported module: line of the first such import}}, {module: file})."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(module, path, modules):
            edges.setdefault(target, line)
        graph[module] = edges
    return graph, modules


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep graph cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module, as [a, b, ..., a]."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target not in members:
                continue
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target not in previous:
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def describe(graph: dict[str, dict[str, int]], modules: dict[str, Path], component: list[str]) -> str:
    cycle = shortest_cycle(graph, component)
    steps = [f"    {a} imports {b} ({modules[a].relative_to(REPO)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return (
        f"  cycle: {' -> '.join(cycle)}\n"
        + "\n".join(steps)
        + (f"\n  (all modules tied up with it: {', '.join(component)})" if len(component) > len(cycle) - 1 else "")
    )


def test_the_graph_sees_every_kind_of_import():
    graph, modules = import_graph()
    assert "release_orchestrator.plugin" in modules and "include.sandbox.server" in modules
    # relative (`from .errors import SpecError`), inside a function, and `from package import submodule`
    assert "release_orchestrator.pipeline.errors" in graph["release_orchestrator.pipeline.loader"]
    assert "release_orchestrator.pipeline.loader" in graph["release_orchestrator.pipeline.importer"]
    assert "include.sandbox.codebuild" in graph["include.sandbox.server"]


def test_cycles_are_found_and_named():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 5}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    graph, modules = import_graph()
    cycles = strongly_connected(graph)
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) among our modules:\n"
            + "\n".join(describe(graph, modules, component) for component in cycles),
            pytrace=False,
        )
