"""``auth_gateway/http/`` is plumbing under every feature: it imports no other gateway module.

Read from the source with the import graph of ``test_import_cycles`` (every ``import`` counts, at
module level, under ``if TYPE_CHECKING:`` or inside a function). The shared library is fine; a
module that needs the gateway's settings, stores or routes is not plumbing and belongs outside.
"""

from __future__ import annotations

from pathlib import Path

from .test_import_cycles import PACKAGES, import_graph

HTTP = "auth_gateway.http"


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
