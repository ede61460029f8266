"""Reading a connection's credentials for use: refreshed first when due, through the shared lease.

``GET /connection/{id}`` and the proxy both come through here, so a token handed out and a token
used upstream obey the same margin, the same single flight and the same error reporting.
"""

from __future__ import annotations

from aiohttp import web

from keyway_shared.events import utcnow
from keyway_shared.refresh.policy import is_due
from keyway_shared.refresh.service import RefreshError, connection_key
from keyway_shared.store import Connection, Environment

from ..http.errors import ApiError
from ..resources import REFRESH
from .outbox_relay import RELAY

__all__ = ["fresh_connection"]


async def fresh_connection(
    app: web.Application, env: Environment, connection: Connection, *, force: bool
) -> Connection:
    """Refresh first when forced or inside the margin, through the lease the token-refresher uses."""
    if not force and not is_due(connection.refresh_due_at, connection.credentials_expires_at, now=utcnow()):
        return connection  # the hot path: no lease, no extra read
    key = connection_key(env.name, connection.provider_config_key, connection.connection_id)
    try:
        outcome = await app[REFRESH].refresh(key, force=force)
    except RefreshError as exc:
        # Unlike Nango's 2024 code, the payload names the connection but never carries it.
        raise ApiError(
            "refresh_token_external_error",
            f"The refresh failed: {exc.description}",
            payload={
                "connectionId": connection.connection_id,
                "providerConfigKey": connection.provider_config_key,
                "error": exc.type,
                "exhausted": exc.exhausted,
            },
        ) from None
    if outcome.refreshed:
        await app[RELAY].drained()  # every replica's connection cache hears of the new token first
    return outcome.connection
