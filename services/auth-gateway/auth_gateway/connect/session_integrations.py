"""``GET /connect/session/integrations``: what the Connect UI lists for a connect session.

The integrations the session allows (all of the environment's when it names none), each with what
the page needs to connect it: its display name and auth mode, how a browser goes through that mode
(``popup``, ``form`` or ``none``, from ``keyway_shared.auth_modes``), the credentials a person types,
the connection configuration the template asks for (less what the session's backend already fixed),
and, for a form, the frontend SDK's route the page posts to (``connect.modes.form_route``).

Nango's Connect UI reads the same from ``GET /integrations`` and ``GET /providers/{provider}`` with
the session token; Keyway answers it in one call of its own, so those secret-key routes keep their
single credential. Nothing secret is in the answer: no client id or secret, no stored value.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Integration

from ..operations.connect_sessions import ConnectSession
from ..resources import CATALOG, STORES
from .modes import form_route
from .sessions import connect_session

__all__ = ["list_session_integrations"]


def _params(template: ProviderTemplate, preset: dict[str, Any]) -> list[dict[str, Any]]:
    """The template's fields a person fills in (``person_fields``), less those the session fixed."""
    params = []
    for name, spec in template.person_fields().items():
        if name in preset:
            continue
        param: dict[str, Any] = {"name": name, "title": str(spec.get("title") or name)}
        for key in ("description", "example", "pattern"):
            if isinstance(spec.get(key), str) and spec[key]:
                param[key] = spec[key]
        param["optional"] = bool(spec.get("optional"))
        params.append(param)
    return params


def _fields(template: ProviderTemplate) -> list[dict[str, Any]]:
    """What a person types: the mode's fields, or, for a form mode without its own (TWO_STEP), the
    template's ``credentials`` a person fills."""
    facts = MODE_FACTS[template.auth_mode]
    if facts.browser != "form":
        return []
    if facts.typed:
        return [{"name": f.name, "label": f.label, "kind": f.kind, "required": f.required} for f in facts.typed]
    return [
        {
            "name": name,
            "label": str(spec.get("title") or name),
            "kind": _kind(name, spec),
            "required": not spec.get("optional", False),
        }
        for name, spec in template.typed_fields()
    ]


def _kind(name: str, spec: dict[str, Any]) -> str:
    """A private key is several lines; a secret is hidden as it is typed."""
    if name.lower().endswith("privatekey"):
        return "textarea"
    return "password" if spec.get("secret") else "text"


def _form_path(mode: str) -> str | None:
    """The frontend SDK's route for ``mode``'s form, relative to the gateway's root (the page puts the
    integration's key in place of ``{providerConfigKey}``); None for a popup mode."""
    route = form_route(mode)
    return route.path.lstrip("/") if route is not None else None


def _entry(integration: Integration, template: ProviderTemplate, session: ConnectSession) -> dict[str, Any]:
    mode = template.auth_mode
    facts = MODE_FACTS[mode]
    defaults = (session.integrations_config_defaults or {}).get(integration.unique_key) or {}
    return {
        "unique_key": integration.unique_key,
        "provider": integration.provider,
        "display_name": template.display_name or integration.provider,
        "auth_mode": mode,
        "flow": facts.browser,  # None: this mode has no browser flow (its connections are imported)
        "fields": _fields(template),
        "params": _params(template, defaults.get("connection_config") or {}),
        "form_path": _form_path(mode),
    }


@connect_session
async def list_session_integrations(request: web.Request, _token: str, session: ConnectSession) -> web.Response:
    """``GET /connect/session/integrations`` (connect session token) → ``{"data": [integration, …]}``."""
    allowed = session.allowed_integrations
    catalog = request.app[CATALOG]
    entries = []
    for integration in await request.app[STORES].integrations.list(session.environment):
        if allowed is not None and integration.unique_key not in allowed:
            continue
        template = catalog.get(integration.provider)
        if template is not None:  # a provider gone from the catalog cannot be connected
            entries.append(_entry(integration, template, session))
    return web.json_response({"data": entries})
