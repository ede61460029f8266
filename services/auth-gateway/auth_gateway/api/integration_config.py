"""``integration_config`` of Nango's current ``POST``/``PATCH /integrations``: values for the fields a
provider template declares under ``integration_config`` (a TWO_STEP provider's shared licence key or
client), kept in the integration's ``custom`` where the connect flow reads them.

Read from Nango's ``integrationConfig.ts`` (``resolveIntegrationConfig``) and ``integration.service.ts``:
a key the template does not declare is refused, a field left empty takes its ``default_value`` (not
in a patch) or, unless optional, is refused as required; a value must be one of an ``enum``, match
a ``pattern`` and, for ``format: uri``, be an http(s) URL. A template with ``integration_config``
takes its values there only, not in ``custom``. Every refusal is ``invalid_body`` naming the fields,
never a value. (Nango's ``visible_when`` gating is not read: no template Keyway ships uses it.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from keyway_shared.providers import ProviderTemplate

from ..http.errors import ApiError

__all__ = ["integration_config_values"]


def _problem(name: str, spec: Mapping[str, Any], value: str) -> str | None:
    title = str(spec.get("title") or name)
    choices = spec.get("enum")
    if isinstance(choices, list) and choices and value not in choices:
        return f"{title} must be one of: {', '.join(str(choice) for choice in choices)}"
    pattern = spec.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            if re.search(pattern, value) is None:
                return f"{title} has an invalid format"
        except re.error:
            pass  # a pattern Python cannot read does not block the integration, as Nango ignores it
    if spec.get("format") == "uri" and urlsplit(value).scheme not in {"http", "https"}:
        return f"{title} must be an http(s) URL"
    return None


def integration_config_values(
    template: ProviderTemplate | None, body: Mapping[str, Any], *, patch: bool = False
) -> dict[str, str]:
    """What ``body``'s ``integration_config`` puts into the integration's ``custom``; ApiError for the rest."""
    submitted = body.get("integration_config") or {}
    schema = template.integration_config if template is not None else {}
    if body.get("custom") and schema:
        raise ApiError("invalid_body", "This provider uses integration_config; set its values there instead of custom")
    if not submitted:
        return {}
    if not schema:
        raise ApiError("invalid_body", "This provider does not accept integration configuration")
    problems = [f"Unknown field {name}" for name in submitted if name not in schema]
    values: dict[str, str] = {}
    for name, raw_spec in schema.items():
        spec = raw_spec if isinstance(raw_spec, dict) else {}
        if patch and name not in submitted:
            continue
        value = submitted.get(name) or ""
        default = spec.get("default_value")
        if not value and isinstance(default, str) and not patch:
            value = default
        if not value:
            if not spec.get("optional"):
                problems.append(f"{spec.get('title') or name} is required")
            elif patch:
                values[name] = ""  # an optional field cleared
            continue
        problem = _problem(name, spec, value)
        if problem is not None:
            problems.append(problem)
        else:
            values[name] = value
    if problems:
        raise ApiError("invalid_body", ", ".join(problems))
    return values
