"""``operations/`` sits under the API views, the connect flows, the dashboard and the proxy: it never imports them,
even indirectly.

Checked in a fresh interpreter, so a module some other test imported first cannot hide an import.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import auth_gateway.operations

_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
features = {"api", "connect", "dashboard", "proxy"}
above = sorted(m for m in sys.modules if m.startswith("auth_gateway.") and m.split(".")[1] in features)
print("\\n".join(above))
"""


def test_operations_import_no_view_and_no_dashboard_module() -> None:
    modules = [f"auth_gateway.operations.{m.name}" for m in pkgutil.iter_modules(auth_gateway.operations.__path__)]
    assert {"auth_gateway.operations.integrations", "auth_gateway.operations.environment"} <= set(modules)
    probe = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == []
