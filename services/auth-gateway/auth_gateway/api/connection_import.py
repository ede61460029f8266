"""``POST /connection``: import a connection whose credentials were obtained elsewhere (spec §3.3).

How Nango users bring existing customers across without asking each to reconnect. The body's
fields depend on the integration's auth mode; the answer (201) echoes the body, as Nango's does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from keyway_shared.credentials import js_iso
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import check_document_keys, json_object
from ..operations.callers import secret_key
from ..operations.connections import store_connection
from ..resources import CATALOG, STORES

__all__ = ["import_connection"]


def _string(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(f"missing_{name}", f"Missing param '{name}'.")
        return None
    if not isinstance(value, str):
        raise ApiError("invalid_body", f"'{name}' must be a string.")
    return value


def _expiry(body: dict[str, Any]) -> datetime | None:
    if body.get("no_expiration") is True:
        return None
    if body.get("expires_at") not in (None, ""):
        value = body["expires_at"]
        try:
            if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
                return datetime.fromtimestamp(float(value), UTC)
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            raise ApiError("invalid_expires_at", "'expires_at' must be a date or unix seconds.") from None
    if body.get("expires_in") not in (None, ""):
        try:
            return utcnow() + timedelta(seconds=int(body["expires_in"]))
        except (TypeError, ValueError):
            raise ApiError("invalid_expires_at", "'expires_in' must be a number of seconds.") from None
    raise ApiError("missing_expires_at", "Give 'expires_at' or 'expires_in', or 'no_expiration': true.")


def _credentials(mode: str, body: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    if mode in {"OAUTH2", "CUSTOM"}:
        access_token = _string(body, "access_token", required=True)
        expires_at = _expiry(body)
        raw = body.get("raw") if isinstance(body.get("raw"), dict) else dict(body)
        credentials: dict[str, Any] = {"type": "OAUTH2", "access_token": access_token, "raw": raw}
        refresh_token = _string(body, "refresh_token", required=False)
        if refresh_token:
            credentials["refresh_token"] = refresh_token
        if expires_at is not None:
            credentials["expires_at"] = js_iso(expires_at)
        overrides = {
            k: v
            for k, v in (
                ("client_id", _string(body, "oauth_client_id_override", required=False)),
                ("client_secret", _string(body, "oauth_client_secret_override", required=False)),
            )
            if v
        }
        if overrides:
            credentials["config_override"] = overrides
        return credentials, expires_at
    if mode == "OAUTH1":
        return {
            "type": "OAUTH1",
            "oauth_token": _string(body, "oauth_token", required=True),
            "oauth_token_secret": _string(body, "oauth_token_secret", required=True),
            "raw": body.get("raw") if isinstance(body.get("raw"), dict) else {},
        }, None
    if mode == "BASIC":
        return {
            "type": "BASIC",
            "username": _string(body, "username", required=True),
            "password": _string(body, "password", required=False) or "",
        }, None
    if mode == "API_KEY":
        return {"type": "API_KEY", "apiKey": _string(body, "api_key", required=True)}, None
    if mode == "TBA":
        return {
            "type": "TBA",
            "token_id": _string(body, "token_id", required=True),
            "token_secret": _string(body, "token_secret", required=True),
        }, None
    if mode == "NONE":
        return {}, None
    raise ApiError("invalid_auth_mode", f"Connections of auth mode {mode} cannot be imported; connect them instead.")


@secret_key
async def import_connection(request: web.Request, env: Environment) -> web.Response:
    body = await json_object(request)
    connection_id = _string(body, "connection_id", required=False)
    key = _string(body, "provider_config_key", required=False)
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
    if template.auth_mode == "TBA" and not config.get("accountId"):
        raise ApiError("missing_account_id", "TBA connections need connection_config.accountId.")
    credentials, expires_at = _credentials(template.auth_mode, body)
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
    )
    return web.json_response(body, status=201)
