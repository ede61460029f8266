"""``POST /connections``: import (or overwrite) a connection, as Nango's current API does.

The body is Nango's (its ``controllers/connection/postConnection.ts``), checked as strictly:
``provider_config_key``, ``connection_id`` (a new id when left out), ``credentials`` with their
``type``, ``connection_config``, ``metadata``, ``end_user``, ``tags``, ``webhook_url_override``;
nothing else, and no query string. The credentials' type must be the integration's auth mode.

The credentials are read by the same import as ``POST /connection`` (``connection_import.py``: each
mode's credentials read their fields), so both generations store the same connection from the same
credentials. Keyway imports what it can use without a connect flow: ``OAUTH2``, ``OAUTH1``,
``API_KEY``, ``BASIC``, ``TBA`` and ``NONE``; ``OAUTH2_CC``, ``APP`` and ``CUSTOM`` connections are
connected, not imported (``invalid_body`` says so): each mode's ``connections_post`` fact. An OAuth 2
token without ``expires_at`` is kept as one that does not expire, as Nango keeps it.

The end user, tags and webhook URL override are then set as ``PATCH /connections/{id}`` sets them
(the creation webhook carries no end user, as Nango's does not). The answer (201) is the connection
as ``GET /connections/{id}`` shows it, with its credentials and times in ``Z``, as Nango's is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.credentials.importing import ImportBody, ImportRefusedError
from keyway_shared.credentials.shapes import (
    ApiKeyType,
    BasicType,
    NoCredentialsType,
    NotImportedType,
    OAuth1Type,
    OAuth2Type,
    TbaType,
    import_credentials,
)
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.query_issues import invalid_params, unrecognized_keys
from ..http.requests import check_document_keys, json_object, validated_body
from ..operations.callers import secret_key
from ..operations.connection_labels import LabelsRefusedError, label_changes, relabel_connection
from ..operations.connections import store_connection
from ..resources import CATALOG, STORES
from .connection_bodies import ConnectionTags, EndUserPatch, WebhookUrl
from .connection_shape import full_connection_json

__all__ = ["ConnectionUpsert", "upsert_connection"]

Text = Annotated[str, StringConstraints(min_length=1)]


class _ClientOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None


class _OAuth2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: OAuth2Type
    access_token: Text
    refresh_token: Text | None = None
    expires_at: str | int | float | None = Field(default=None, description="A date, or milliseconds (JavaScript's)")
    config_override: _ClientOverride | None = None


class _OAuth1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: OAuth1Type
    oauth_token: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    oauth_token_secret: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class _ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: ApiKeyType
    apiKey: Annotated[str, StringConstraints(min_length=1, max_length=1024)]  # noqa: N815 - Nango's name


class _Basic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: BasicType
    username: Annotated[str, StringConstraints(max_length=1024)]
    password: Annotated[str, StringConstraints(max_length=1024)]


class _Tba(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: TbaType
    token_id: Text
    token_secret: Text
    config_override: _ClientOverride | None = None


class _NoCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: NoCredentialsType


class _Connected(BaseModel):
    """The types Keyway connects but does not import (their fields are not read)."""

    model_config = ConfigDict(extra="allow")
    type: NotImportedType


class _ConnectionConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    oauth_scopes_override: list[str] | None = None


class ConnectionUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider_config_key: str
    connection_id: str | None = None
    credentials: Annotated[
        _OAuth2 | _OAuth1 | _ApiKey | _Basic | _Tba | _NoCredentials | _Connected, Field(discriminator="type")
    ]
    connection_config: _ConnectionConfig | None = None
    metadata: dict[str, Any] | None = None
    end_user: EndUserPatch | None = None
    tags: ConnectionTags | None = None
    webhook_url_override: WebhookUrl | None = None


def _import_fields(credentials: BaseModel) -> dict[str, Any]:
    """The credentials as ``POST /connection``'s body names them (``ImportBody``)."""
    given = credentials.model_dump(exclude_none=True)
    given.pop("type")
    if isinstance(credentials, _ApiKey):
        return {"api_key": credentials.apiKey}
    if not isinstance(credentials, _OAuth2):
        return given
    fields: dict[str, Any] = {"access_token": credentials.access_token, "raw": {"type": credentials.type, **given}}
    if credentials.refresh_token:
        fields["refresh_token"] = credentials.refresh_token
    expires_at = credentials.expires_at
    if expires_at is None:
        fields["no_expiration"] = True
    elif isinstance(expires_at, int | float):  # zod's coerce.date: a number is JavaScript's milliseconds
        try:
            fields["expires_at"] = datetime.fromtimestamp(expires_at / 1000, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise ApiError("invalid_body", "'credentials.expires_at' is not a date.") from None
    else:
        fields["expires_at"] = expires_at
    override = credentials.config_override
    if override is not None:
        fields["oauth_client_id_override"] = override.client_id
        fields["oauth_client_secret_override"] = override.client_secret
    return fields


@secret_key
async def upsert_connection(request: web.Request, env: Environment) -> web.Response:
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)
    body = validated_body(ConnectionUpsert, await json_object(request))
    key = body.provider_config_key
    integration = await request.app[STORES].integrations.get(env.name, key)
    if integration is None:
        raise ApiError("not_found", "Integration does not exist", status=404)
    template = request.app[CATALOG].get(integration.provider)
    if template is None:
        raise ApiError("not_found", "Provider does not exist", status=404)
    kind = body.credentials.type
    if template.auth_mode != kind:
        raise ApiError("invalid_body", f"Provider {template.auth_mode} does not support {kind} auth", status=400)
    if MODE_FACTS[kind].connections_post == "refuse":
        raise ApiError("invalid_body", f"Keyway cannot import {kind} connections: connect them instead.", status=400)
    config = body.connection_config.model_dump(exclude_none=True) if body.connection_config else {}
    check_document_keys(config, "connection_config")
    if body.metadata is not None:
        check_document_keys(body.metadata, "metadata")
    try:
        changes = label_changes(
            end_user=body.end_user.model_dump() if body.end_user else None,
            tags=body.tags,
            webhook_url_override=body.webhook_url_override,
        )
        credentials, expires_at = import_credentials(
            template.auth_mode, ImportBody(_import_fields(body.credentials), connection_config=config, now=utcnow())
        )
    except (LabelsRefusedError, ImportRefusedError) as refused:
        raise ApiError("invalid_body", str(refused), status=400) from None
    connection_id = body.connection_id or str(uuid.uuid4())
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
        metadata=body.metadata if body.metadata is not None else {},
        imported=True,
    )
    if changes:
        await relabel_connection(request.app, env.name, key, connection_id, changes)
    stored = await request.app[STORES].connections.get(env.name, key, connection_id)
    if stored is None:  # deleted between the write and this read
        raise ApiError("not_found", "Failed to find connection", status=404)
    return web.json_response(full_connection_json(stored, include_refresh_token=True, written=True), status=201)
