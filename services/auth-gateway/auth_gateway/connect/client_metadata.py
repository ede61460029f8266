"""``GET /oauth/client-metadata/{environment}/{providerConfigKey}``: Keyway's OAuth client ID metadata
document for an MCP integration (the MCP authorization spec's "client ID metadata documents").

An authorization server that meets Keyway's client id, which is this document's URL
(``own_client.client_metadata_url``), fetches it to learn the client: its ``client_id`` must be the
URL it was fetched from, its ``redirect_uris`` name where codes may go. Public, as Nango's is, and
short-lived in caches so that a changed callback URL or name reaches the servers soon. The
integration's ``custom`` may name the client (``oauth_client_name``, ``oauth_client_uri``,
``oauth_client_logo_uri``), as Nango's PATCH of an MCP integration sets them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from keyway_shared.auth_modes import MODE_FACTS, mode_named

from ..http.errors import ApiError
from ..openapi_spec import no_credential
from ..operations.environment import callback_url
from ..resources import CATALOG, SETTINGS, STORES
from .own_client import client_metadata_url

__all__ = ["client_metadata_document"]


def _web_url(value: str | None) -> str | None:
    parts = urlsplit(value or "")
    return value if parts.scheme in ("https", "http") and parts.hostname else None


@no_credential  # authorization servers fetch it, as Nango's is public
async def client_metadata_document(request: web.Request) -> web.Response:
    environment = request.match_info["environment"]
    key = request.match_info["providerConfigKey"]
    stores = request.app[STORES]
    env = await stores.environments.get(environment)
    if env is None:
        raise ApiError("unknown_environment", "There is no such environment.", status=404)
    integration = await stores.integrations.get(env.name, key)
    template = request.app[CATALOG].get(integration.provider) if integration is not None else None
    mode = mode_named(template.auth_mode) if template is not None else None
    client_id = client_metadata_url(request.app, env.name, key)
    if integration is None or mode is None or not MODE_FACTS[mode].own_client:
        raise ApiError("unknown_provider_config", f"There is no MCP integration '{key}'.", status=404)
    if client_id is None:  # Keyway is not where a server could fetch this from
        raise ApiError(
            "feature_disabled", "Client ID metadata documents need Keyway at a public https URL.", status=404
        )
    custom = integration.custom
    document: dict[str, Any] = {
        "client_id": client_id,
        "client_name": custom.get("oauth_client_name") or "Keyway",
        "client_uri": _web_url(custom.get("oauth_client_uri")) or request.app[SETTINGS].public_url,
        "redirect_uris": [callback_url(request.app, env)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    if logo := _web_url(custom.get("oauth_client_logo_uri")):
        document["logo_uri"] = logo
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})
