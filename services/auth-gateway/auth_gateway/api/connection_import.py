"""``POST /connection``: import a connection whose credentials were obtained elsewhere (spec §3.3).

How Nango users bring existing customers across without asking each to reconnect. The body's
fields depend on the integration's auth mode: which credentials it imports as is a fact of the mode
(``keyway_shared.auth_modes``), and those credentials read their fields (``from_import``). The answer
(201) echoes the body, as Nango's does. The provider's post-connection enrichment runs as for a
connection made in the browser (Nango runs its script on import too): an imported Jira connection
gets its ``cloudId`` without the app computing it; fields the body gives are kept.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.credentials.importing import ImportBody, ImportRefusedError
from keyway_shared.credentials.shapes import import_credentials
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import check_document_keys, json_object
from ..operations.callers import secret_key
from ..operations.connections import store_connection
from ..resources import CATALOG, STORES

__all__ = ["import_connection"]


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError("invalid_body", f"'{name}' must be a string.")
    return value


@secret_key
async def import_connection(request: web.Request, env: Environment) -> web.Response:
    body = await json_object(request)
    connection_id = _string(body, "connection_id")
    key = _string(body, "provider_config_key")
    if not connection_id:
        raise ApiError("missing_connection", "Missing param 'connection_id'.")
    if not key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    integration = await request.app[STORES].integrations.get(env.name, key)
    if integration is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    template = request.app[CATALOG].get(integration.provider)
    if template is None:
        raise ApiError("unknown_provider_template", f"The provider '{integration.provider}' is not in the catalog.")
    config = body.get("connection_config") or {}
    metadata = body.get("metadata")
    if not isinstance(config, dict) or (metadata is not None and not isinstance(metadata, dict)):
        raise ApiError("invalid_body", "'connection_config' and 'metadata' must be JSON objects.")
    check_document_keys(config, "connection_config")  # both are stored as they are (credentials encrypted)
    if metadata is not None:
        check_document_keys(metadata, "metadata")
    if isinstance(config.get("oauth_scopes_override"), str):
        config = {**config, "oauth_scopes_override": [s for s in config["oauth_scopes_override"].split(",") if s]}
    try:  # the fields each mode's credentials read: keyway_shared.credentials.shapes, from_import
        credentials, expires_at = import_credentials(
            template.auth_mode, ImportBody(body, connection_config=config, now=utcnow(), template=template)
        )
    except ImportRefusedError as refused:
        raise ApiError(refused.code, refused.message) from None
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=key,
        provider=integration.provider,
        auth_mode=template.auth_mode,
        connection_id=connection_id,
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
        metadata=metadata,
        imported=True,
    )
    return web.json_response(body, status=201)
