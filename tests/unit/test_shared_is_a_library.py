"""The shared library imports no service and no tool: every service image holds it, and nothing else.

A module of ``keyway_shared`` that reached into a service (or into ``keyway_cli``, which imports every
service) would make each image depend on code it does not ship. The check reads the source with
``ast`` rather than importing it, so a function-level import, an ``importlib.import_module("...")``
with a literal name, and a ``"package.module:Name"`` path kept as data for a later dynamic import (as
the configuration reference generator did before it moved to ``keyway_cli``) are caught too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import keyway_shared

SHARED = Path(keyway_shared.__file__).resolve().parent
FORBIDDEN = {"auth_gateway", "token_refresher", "webhook_dispatcher", "activity_log", "keyway_cli"}
DYNAMIC_IMPORTERS = {"import_module", "__import__"}
# "auth_gateway.settings" or "auth_gateway.settings:GatewaySettings": a module path held for importlib.
MODULE_PATH = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_]*)?")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute module name the tree imports, statically, by a literal dynamic import, or as a
    dotted module path kept in a string."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0]
            if name in DYNAMIC_IMPORTERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_PATH.fullmatch(node.value):
            found.append((node.lineno, node.value.split(":")[0]))
    return found


def service_imports(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root.parent)}:{line}: {module}"
        for path in sorted(root.rglob("*.py"))
        for line, module in sorted(set(imported_modules(ast.parse(path.read_text(), filename=str(path)))))
        if module.split(".")[0] in FORBIDDEN
    ]


def test_the_shared_library_imports_no_service_and_no_tool() -> None:
    assert list(SHARED.rglob("*.py")), SHARED
    assert service_imports(SHARED) == []


def test_the_check_sees_static_function_level_and_dynamic_imports(tmp_path: Path) -> None:
    package = tmp_path / "keyway_shared"
    package.mkdir()
    (package / "a.py").write_text("import auth_gateway.settings\nimport json\n")
    (package / "b.py").write_text("def f():\n    from token_refresher import app\n    from . import a\n")
    (package / "c.py").write_text("import importlib\nimportlib.import_module('keyway_cli.main')\n")
    (package / "d.py").write_text("__import__('activity_log')\nfrom keyway_shared import settings\n")
    (package / "e.py").write_text(
        "SERVICES = {'hook': 'webhook_dispatcher.settings:DispatcherSettings'}\nX = 'keyway.events'\n"
    )
    assert service_imports(package) == [
        "keyway_shared/a.py:1: auth_gateway.settings",
        "keyway_shared/b.py:2: token_refresher",
        "keyway_shared/c.py:2: keyway_cli.main",
        "keyway_shared/d.py:1: activity_log",
        "keyway_shared/e.py:1: webhook_dispatcher.settings",
    ]
