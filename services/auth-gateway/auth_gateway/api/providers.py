"""``GET /providers`` and ``GET /providers/{provider}``: the provider catalog in Nango's current shape.

Beside the 2024 routes (``/provider``, ``provider.py``), which answer ``{"providers": {name: template}}``
and ``{"provider": template}``: these answer ``{"data": [provider, …]}`` and ``{"data": provider}``,
each provider being its template with its ``name``, as ``@nangohq/node`` 0.71's ``listProviders`` and
``getProvider`` return them to the caller.

What a provider holds is what the catalog holds: the resolved template (an alias merged into the
provider it names, the ``alias`` key dropped, as Nango resolves it). Nango also sends a ``logo_url``
pointing at images its own server hosts; Keyway hosts no logos, so it sends none rather than a link
that leads nowhere.

Both answer a connect session's token as well as the secret key (Nango's Connect UI reads the catalog
with its session); the catalog is the same for either.

``GET /providers/{provider}/templates`` (secret key only, as Nango) answers ``{"data": [function, …]}``:
in Nango, the ready-made syncs and actions of its templates repository for that provider, and an
empty list for a provider it has none for, known or not. Keyway runs no scripts and ships no
templates, so the list is empty for every provider: the truth, in Nango's shape.

The query string is checked as strictly as Nango checks it (``http/query_issues.py``): ``search`` is
the only parameter of the list, the single provider takes none, and a name outside Nango's pattern is
refused before the catalog is asked.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from keyway_shared.providers.catalog import ProviderCatalog
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.query_issues import check_string, invalid_params, single_values, unrecognized_keys
from ..operations.callers import secret_key, secret_key_or_connect_session
from ..operations.connect_sessions import ConnectSession
from ..resources import CATALOG

__all__ = [
    "MAX_LENGTH",
    "PROVIDER_ANSWER",
    "PROVIDER_LIST_ANSWER",
    "PROVIDER_NAME",
    "SEARCH",
    "TEMPLATE_LIST_ANSWER",
    "get_provider",
    "list_provider_templates",
    "list_providers",
]

# Nango's patterns (its server's helpers/validation.ts): a provider's name, and the search text, which
# may hold the characters of an integration key. Either is at most 255 characters.
PROVIDER_NAME = re.compile(r"[a-zA-Z0-9_-]+")
SEARCH = re.compile(r"[a-zA-Z0-9~:.@ _-]+")
MAX_LENGTH = 255


@secret_key_or_connect_session
async def list_providers(request: web.Request, _env: Environment, _session: ConnectSession | None) -> web.Response:
    query = request.query
    values, issues = single_values(query, ("search",))
    search = values.get("search")
    if search is not None:
        issues += check_string(search, ["search"], pattern=SEARCH, max_length=MAX_LENGTH)
    issues += unrecognized_keys(query, {"search"})  # zod reports the unknown keys after the known ones
    if issues:
        raise invalid_params(issues)
    catalog = request.app[CATALOG]
    return web.json_response({"data": [_provider(catalog, name) for name in _matching(catalog, search)]})


@secret_key_or_connect_session
async def get_provider(request: web.Request, _env: Environment, _session: ConnectSession | None) -> web.Response:
    name = _provider_in_path(request)
    catalog = request.app[CATALOG]
    if name not in catalog:
        raise ApiError("not_found", f"Unknown provider {name}", status=404)
    return web.json_response({"data": _provider(catalog, name)})


@secret_key
async def list_provider_templates(request: web.Request, _env: Environment) -> web.Response:
    _provider_in_path(request)
    return web.json_response({"data": []})  # Keyway ships no templates: none for any provider, as Nango for one without


def _provider_in_path(request: web.Request) -> str:
    """The path's provider name, once the query is known empty and the name fits Nango's pattern."""
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)
    name = request.match_info["provider"]
    if issues := check_string(name, ["provider"], pattern=PROVIDER_NAME, max_length=MAX_LENGTH):
        raise invalid_params(issues, code="invalid_uri_params")
    return name


def _matching(catalog: ProviderCatalog, search: str | None) -> list[str]:
    """The catalog's names, or those ``search`` finds in, case aside.

    Nango reads the search as a regular expression; the characters its pattern lets through make only
    ``.`` special (any character), which Python's ``re`` reads the same way, and no expression built
    from them can backtrack badly.
    """
    if not search:
        return catalog.names()
    wanted = re.compile(search, re.IGNORECASE)
    return [name for name in catalog.names() if wanted.search(name)]


def _provider(catalog: ProviderCatalog, name: str) -> dict[str, Any]:
    template = {key: value for key, value in (catalog.raw(name) or {}).items() if key != "alias"}
    return {**template, "name": name}


_PROVIDER: dict[str, Any] = {
    "type": "object",
    "description": "The provider's template (Nango's providers.yaml schema) with its name",
    "required": ["name", "auth_mode"],
    "properties": {
        "name": {"type": "string"},
        "display_name": {"type": "string"},
        "auth_mode": {"type": "string"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "docs": {"type": "string"},
    },
}
PROVIDER_LIST_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "array", "items": _PROVIDER}},
}
PROVIDER_ANSWER: dict[str, Any] = {"type": "object", "required": ["data"], "properties": {"data": _PROVIDER}}
TEMPLATE_LIST_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "maxItems": 0,
            "items": {"type": "object", "description": "A sync or action template (Nango's NangoFunction)"},
            "description": "Always empty: Keyway runs no scripts and ships no templates",
        }
    },
}
