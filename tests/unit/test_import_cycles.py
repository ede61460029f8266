"""No import cycles inside a package: every ``import`` counts as an edge, at module level, under
``if TYPE_CHECKING:`` or inside a function, so a cycle cannot hide behind an import moved into a
function body (the usual way to make one run). Read from the source with ``ast``; nothing is imported.

Checked for the gateway, the three workers and the shared library. A failure prints one cycle of
each tangle; the fix is to move what both sides need into a module both import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "auth_gateway": ROOT / "services/auth-gateway/auth_gateway",
    "activity_log": ROOT / "services/activity-log/activity_log",
    "token_refresher": ROOT / "services/token-refresher/token_refresher",
    "webhook_dispatcher": ROOT / "services/webhook-dispatcher/webhook_dispatcher",
    "keyway_shared": ROOT / "shared/keyway_shared",
}


def modules_of(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (a package is its ``__init__``)."""
    root_name = package_dir.name
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root_name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module ``name`` loads from this package: itself, or its closest enclosing module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's own modules that ``module`` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    targets: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            # ``from pkg import name`` loads the submodule ``pkg.name`` when there is one.
            targets.update(_known(f"{base}.{alias.name}", modules) or _known(base, modules) for alias in node.names)
    return {target for target in targets if target is not None and target != module}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = modules_of(package_dir)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """Tarjan's components with more than one module: each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                components.append(frozenset(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def one_cycle(graph: Mapping[str, Iterable[str]], component: frozenset[str]) -> list[str]:
    """A shortest cycle through the component's first module, as the path ``a -> b -> ... -> a``."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ not in component:
                    continue
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{sorted(component)} holds no cycle")


def describe(graph: Mapping[str, Iterable[str]], components: Iterable[frozenset[str]]) -> str:
    return "\n".join(
        f"  {' -> '.join(one_cycle(graph, c))}  (component: {', '.join(sorted(c))})"
        for c in sorted(components, key=sorted)
    )


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    graph = import_graph(PACKAGES[package])
    tangles = strongly_connected(graph)
    assert not tangles, f"Import cycles in {package} (function-level imports count too):\n{describe(graph, tangles)}"


def test_the_check_sees_a_cycle_closed_inside_a_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "views").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "views" / "__init__.py").write_text("")
    (package / "views" / "flow.py").write_text("from ..shared import helper\n")
    (package / "shared.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import pkg.other\n"
        "def helper():\n    from .views import flow\n    return flow\n"
    )
    (package / "other.py").write_text("from pkg import shared\n")
    graph = import_graph(package)
    assert graph["pkg.views.flow"] == {"pkg.shared"}
    assert graph["pkg.shared"] == {"pkg.views.flow", "pkg.other"}
    assert graph["pkg.other"] == {"pkg.shared"}
    assert strongly_connected(graph) == [frozenset({"pkg.shared", "pkg.views.flow", "pkg.other"})]
    assert describe(graph, strongly_connected(graph)).split("  (")[0].strip() == (
        "pkg.other -> pkg.shared -> pkg.other"
    )
