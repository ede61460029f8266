"""``docs/configuration.md``: every environment variable each service reads, from its settings class.

The settings classes are the only place a variable is defined; this renders them, so the reference
cannot drift from the code (a test compares the file with a fresh rendering). Every field must
carry a description: a knob without one fails the test instead of going undocumented.

    uv run python -m keyway_cli.config_reference write    # after changing a settings class
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from keyway_shared.settings import BaseServiceSettings, EnvironmentSettings, environment_names

__all__ = ["SERVICES", "render", "undocumented"]

# Service name -> "module:Class", imported when rendering only. This generator lives in the tools
# member because it needs every service: the shared library imports none, and no service image holds
# the tools (`make config-doc` runs it in the workspace, where all of them are installed).
SERVICES = {
    "auth-gateway": "auth_gateway.settings:GatewaySettings",
    "token-refresher": "token_refresher.settings:RefresherSettings",
    "webhook-dispatcher": "webhook_dispatcher.settings:DispatcherSettings",
    "activity-log": "activity_log.settings:ActivityLogSettings",
}
DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"

HEADER = """# Configuration reference

Every Keyway service reads its configuration from environment variables only (the images need
nothing else). This file is generated from the services' settings classes by
`uv run python -m keyway_cli.config_reference write`; a test fails when it is out of date. The
README's Configuration section explains the ones most deployments set.

Lists are comma-separated. Durations are seconds unless the name says otherwise. Names in
parentheses are accepted too.
"""


def _settings_class(path: str) -> type[EnvironmentSettings]:
    module, name = path.split(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, EnvironmentSettings)):
        raise TypeError(f"{path} is not a settings class")
    return cls


def _names(name: str, info: FieldInfo) -> tuple[str, list[str]]:
    """The variable's name and its other accepted names, as the settings class reads them."""
    env = environment_names(name, info.validation_alias)
    return env[0], env[1:]


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "" or value == [] or value == ():
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (list, tuple)):
        return "`" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _rows(cls: type[EnvironmentSettings], fields: list[str]) -> list[str]:
    rows = []
    for name in fields:
        info = cls.model_fields[name]
        env, others = _names(name, info)
        also = f" ({', '.join(f'`{o}`' for o in others)})" if others else ""
        text = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{env}`{also} | {_default(info)} | {text} |")
    return rows


def _table(rows: list[str]) -> list[str]:
    return ["| variable | default | meaning |", "| --- | --- | --- |", *rows, ""]


def _classes() -> dict[str, type[EnvironmentSettings]]:
    return {service: _settings_class(path) for service, path in SERVICES.items()}


def render() -> str:
    shared = list(BaseServiceSettings.model_fields)
    lines = [HEADER, "## Every service", "", *_table(_rows(BaseServiceSettings, shared))]
    for service, cls in _classes().items():
        own = [name for name in cls.model_fields if name not in BaseServiceSettings.model_fields]
        overridden = [
            name for name in shared if cls.model_fields[name].default != BaseServiceSettings.model_fields[name].default
        ]
        lines += [f"## {service}", "", *_table(_rows(cls, own + overridden))]
    return "\n".join(lines).rstrip() + "\n"


def undocumented() -> list[str]:
    """Variables without a description, as ``service: NAME``."""
    missing = []
    classes: dict[str, type[EnvironmentSettings]] = {"shared": BaseServiceSettings, **_classes()}
    for service, cls in classes.items():
        for name, info in cls.model_fields.items():
            if not info.description and (service == "shared" or name not in BaseServiceSettings.model_fields):
                missing.append(f"{service}: {_names(name, info)[0]}")
    return missing


def main(argv: list[str]) -> int:
    if argv[1:] != ["write"]:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
