"""Revoking a connection's tokens at its provider (RFC 7009) before it is deleted here.

The refresh token goes first: revoking it usually ends the whole grant, so the access token's
revocation is only a second line. Each attempt becomes an activity entry (statuses, never tokens).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from keyway_shared.credentials.revoke import TokenRevocation, TokenTypeHint, revoke_token
from keyway_shared.events import ActivityMessage, make_event
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError
from keyway_shared.store import Connection

from ..resources import CATALOG, HTTP, SETTINGS, STORES
from .connections import SOURCE
from .outbox_relay import RELAY

__all__ = ["Revocation", "revoke_connection"]

OPERATION = "auth:revoke_connection"


@dataclass(frozen=True, kw_only=True)
class Revocation:
    status: Literal["revoked", "failed"]
    detail: str
    tokens: dict[str, str] = field(default_factory=dict)  # token type hint -> "revoked" | "failed"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "tokens": self.tokens}


async def revoke_connection(app: web.Application, connection: Connection) -> Revocation | None:
    """Revoke at the provider when its template declares how; None when there is nothing to do."""
    template = app[CATALOG].get(connection.provider)
    if template is None or not template.revocation_url:
        return None
    hints: list[TokenTypeHint] = ["refresh_token", "access_token"]
    document = connection.credentials.dump()
    tokens = [(hint, document.get(hint)) for hint in hints]
    present = [(hint, str(token)) for hint, token in tokens if isinstance(token, str) and token]
    if not present:
        return None
    operation_id = uuid.uuid4().hex
    try:
        url = template.render_url(template.revocation_url, connection.connection_config, stored=True)
    except (MissingParamError, UnsafeParamError) as exc:
        # A stored value that would move the URL fails closed: the tokens and client secret stay here.
        detail = (
            f"The revocation URL needs {', '.join(exc.names)}."
            if isinstance(exc, MissingParamError)
            else f"The revocation URL cannot use connectionConfig.{exc.name}: it {exc.reason}."
        )
        outcome = Revocation(status="failed", detail=detail)
        await _record(app, connection, operation_id, ok=False, message=outcome.detail)
        return outcome
    integration = await app[STORES].integrations.get(connection.environment, connection.provider_config_key)
    override = document.get("config_override") or {}
    client_id = str(override.get("client_id") or (integration.oauth_client_id if integration else "") or "")
    client_secret = str(override.get("client_secret") or (integration.oauth_client_secret if integration else "") or "")
    results: list[TokenRevocation] = []
    for hint, token in present:
        result = await revoke_token(
            app[HTTP],
            url=url,
            template=template,
            token=token,
            token_type_hint=hint,
            client_id=client_id,
            client_secret=client_secret,
            timeout_seconds=app[SETTINGS].provider_timeout_seconds,
        )
        results.append(result)
        await _record(app, connection, operation_id, ok=result.ok, message=result.detail, hint=hint)
    failed = [r for r in results if not r.ok]
    return Revocation(
        status="failed" if failed else "revoked",
        detail=" ".join(r.detail for r in failed) if failed else "The provider revoked the connection's tokens.",
        tokens={r.token_type_hint: "revoked" if r.ok else "failed" for r in results},
    )


async def _record(
    app: web.Application,
    connection: Connection,
    operation_id: str,
    *,
    ok: bool,
    message: str,
    hint: str | None = None,
) -> None:
    data = ActivityMessage(
        operation_id=operation_id,
        operation_type=OPERATION,
        level="info" if ok else "warn",
        message=message,
        state="success" if ok else "failed",
        provider_config_key=connection.provider_config_key,
        provider=connection.provider,
        connection_id=connection.connection_id,
        meta={"token_type_hint": hint} if hint else None,
    )
    event = make_event(
        data,
        type="activity.message",
        source=SOURCE,
        environment=connection.environment,
        subject=f"{connection.provider_config_key}/{connection.connection_id}",
    )
    row = await app[STORES].outbox.add(event)
    app[RELAY].publish_soon([row])
