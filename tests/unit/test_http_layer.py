"""The gateway's layers, read from its imports.

``auth_gateway/http/`` is plumbing under every feature: it imports no other gateway module. The
features sit side by side over ``operations/``: ``api/`` (the secret-key backend API), ``connect/``
(what a browser or frontend SDK touches), ``dashboard/`` and ``proxy/`` never reach one another, not
even through a module in between, and ``operations/`` reaches none of them. At the top level sit only
the application and its route table (which put the features together), its settings and resources,
the OpenAPI builders and the two caches; none of them but the first reaches a feature.

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
FEATURES = ("api", "connect", "dashboard", "proxy")
UNREACHABLE = {
    "api": ("connect", "dashboard", "proxy"),
    "connect": ("api", "dashboard", "proxy"),
    "dashboard": ("api", "connect", "proxy"),
    "proxy": ("api", "connect", "dashboard"),
    "operations": FEATURES,
}
LAYERS = frozenset({*FEATURES, "http", "operations"})
# Every module of the gateway's top level; the first four put the features together.
COMPOSITION = frozenset({"__main__", "app", "routes", "openapi"})
TOP_LEVEL = COMPOSITION | {
    "__init__",
    "settings",
    "resources",
    "openapi_spec",
    "openapi_schemas",
    "env_cache",
    "connection_cache",
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
    assert {f"{HTTP}.errors", f"{HTTP}.listeners", f"{HTTP}.ratelimit", f"{HTTP}.requests"} <= set(graph)
    assert f"{HTTP}.idempotency.middleware" in graph
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


def test_the_top_level_holds_only_the_app_its_settings_resources_and_openapi() -> None:
    """A new module goes into a layer: ``operations/`` if a feature and ``operations/`` need it, ``http/`` if
    it has no domain, else the one feature that uses it."""
    package = PACKAGES["auth_gateway"]
    modules = {path.stem for path in package.glob("*.py")}
    packages = {path.name for path in package.iterdir() if path.is_dir() and any(path.rglob("*.py"))}
    assert {"app", "routes", "settings", "resources"} <= modules
    assert modules - TOP_LEVEL == set()
    assert packages == LAYERS


def test_below_the_composition_no_top_level_module_reaches_a_feature() -> None:
    graph = import_graph(PACKAGES["auth_gateway"])
    top = {module.removeprefix("auth_gateway.") for module in graph if module.count(".") == 1}
    below = sorted(top - LAYERS - COMPOSITION)
    assert {"resources", "settings", "openapi_spec"} <= set(below)
    reached = {}
    for module in below:
        reached |= reached_from(graph, "auth_gateway", module, FEATURES)
    assert reached == {}


def test_the_check_sees_a_top_level_module_reaching_a_feature(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "connect").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "connect" / "__init__.py").write_text("")
    (package / "connect" / "sessions.py").write_text("")
    (package / "resources.py").write_text("from .connect.sessions import Store\n")
    graph = import_graph(package)
    assert reached_from(graph, "pkg", "resources", ("connect",)) == {
        "pkg.resources": ["pkg.resources", "pkg.connect.sessions"]
    }
