"""The gateway's layers, read from its imports.

``auth_gateway/http/`` is plumbing under every feature: it imports no other gateway module. The
features sit side by side over ``operations/``: ``api/`` (the secret-key backend API), ``connect/``
(what a browser or frontend SDK touches) and ``dashboard/`` never reach one another, not even through
a module in between, and ``operations/`` reaches none of them.

Read from the source with the import graph of ``test_import_cycles`` (every ``import`` counts, at
module level, under ``if TYPE_CHECKING:`` or inside a function). The shared library is fine; a
module that needs the gateway's settings, stores or routes is not plumbing and belongs outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from .test_import_cycles import PACKAGES, import_graph

HTTP = "auth_gateway.http"

# Each feature layer, and the layers it must never reach.
UNREACHABLE = {
    "api": ("connect", "dashboard"),
    "connect": ("api", "dashboard"),
    "dashboard": ("api", "connect"),
    "operations": ("api", "connect", "dashboard"),
}


def outside_imports(package_dir: Path, layer: str) -> dict[str, set[str]]:
    """Each module of ``layer`` that imports a module of the package outside ``layer``, with those imports."""
    graph = import_graph(package_dir)

    def inside(module: str) -> bool:
        return module == layer or module.startswith(layer + ".")

    found = {module: {t for t in targets if not inside(t)} for module, targets in graph.items() if inside(module)}
    return {module: targets for module, targets in found.items() if targets}


def test_http_imports_nothing_else_of_the_gateway() -> None:
    graph = import_graph(PACKAGES["auth_gateway"])
    assert {f"{HTTP}.errors", f"{HTTP}.listeners", f"{HTTP}.metrics"} <= set(graph)
    assert outside_imports(PACKAGES["auth_gateway"], HTTP) == {}


def test_the_check_sees_an_import_out_of_the_layer(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "http").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text("")
    (package / "http" / "__init__.py").write_text("")
    (package / "http" / "errors.py").write_text("")
    (package / "http" / "bodies.py").write_text(
        "from .errors import x\ndef timeout():\n    from ..settings import SETTINGS\n    return SETTINGS\n"
    )
    assert outside_imports(package, "pkg.http") == {"pkg.http.bodies": {"pkg.settings"}}


def reached_from(
    graph: Mapping[str, set[str]], package: str, layer: str, forbidden: tuple[str, ...]
) -> dict[str, list[str]]:
    """For each module of ``layer`` that reaches a ``forbidden`` layer, one import path that does."""

    def in_layer(module: str, name: str) -> bool:
        return module == f"{package}.{name}" or module.startswith(f"{package}.{name}.")

    found = {}
    for start in sorted(m for m in graph if in_layer(m, layer)):
        came_from: dict[str, str] = {start: start}
        frontier = [start]
        while frontier:
            following = []
            for node in frontier:
                for target in sorted(graph.get(node, ())):
                    if target not in came_from:
                        came_from[target] = node
                        following.append(target)
            frontier = following
        hit = next((m for m in sorted(came_from) if any(in_layer(m, f) for f in forbidden)), None)
        if hit is not None:
            path = [hit]
            while path[-1] != start:
                path.append(came_from[path[-1]])
            found[start] = path[::-1]
    return found


@pytest.mark.parametrize("layer", sorted(UNREACHABLE))
def test_a_feature_never_reaches_another(layer: str) -> None:
    graph = import_graph(PACKAGES["auth_gateway"])
    assert any(m.startswith(f"auth_gateway.{layer}.") for m in graph)
    assert reached_from(graph, "auth_gateway", layer, UNREACHABLE[layer]) == {}


def test_the_check_sees_a_feature_reached_through_a_module_in_between(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    for name in ("api", "connect"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def flow():\n    from .connect import oauth\n    return oauth\n")
    (package / "connect" / "oauth.py").write_text("")
    (package / "api" / "config.py").write_text("from ..helpers import flow\n")
    graph = import_graph(package)
    assert reached_from(graph, "pkg", "api", ("connect",)) == {
        "pkg.api.config": ["pkg.api.config", "pkg.helpers", "pkg.connect.oauth"]
    }
    assert reached_from(graph, "pkg", "connect", ("api",)) == {}
