"""What every connect flow ends with: the connection stored and announced, or the failure announced.

Both go through the outbox, in the same transaction as the connection when there is one, so an
event is never lost to a broker outage and never sent for a write that did not happen.

A connect session is spent before the write (an atomic claim: of parallel attempts with one token,
one writes and the others are refused) and given back if the write fails; the connection then
belongs to the session's end user, and a session never writes over another end user's connection.

A write is answered once the broker confirmed its event, so every replica's connection cache hears
of it first, or once the request's deadline (``KEYWAY_REQUEST_DEADLINE_SECONDS``) comes without that
confirmation: the broker is away, the write is durable all the same and its event waits in the
outbox for the relay or any replica's sweep. The answer is then the write's (it happened; a 503
would invite a retry of something done), and the cache's promise is bounded instead of kept: this
replica drops its entry at once, a replica whose own broker link is down too has no working
barrier and reads the database, and only a replica that still reaches the broker while this one
does not may serve the previous credentials, for at most ``KEYWAY_CONNECTION_CACHE_SECONDS`` after
the answer (plus a database read that was already in flight). Such answers are counted
(``keyway_gateway_unconfirmed_writes_total``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from keyway_shared.backoff import Backoff
from keyway_shared.credentials import Credentials
from keyway_shared.deadline import spawn_detached
from keyway_shared.events import (
    AuthFailed,
    AuthMode,
    CloudEvent,
    ConnectionCreated,
    ConnectionUpdated,
    ErrorInfo,
    EventData,
    make_event,
)
from keyway_shared.logging import get_logger
from keyway_shared.refresh.policy import DEFAULT_MARGIN
from keyway_shared.store import Connection, Environment, OutboxRow
from keyway_shared.store.connection_labels import tag_fields
from keyway_shared.store.connections import ConnectionOwnedError
from keyway_shared.unavailability import is_unavailability

from ..connection_cache import CONNECTION_CACHE
from ..http.errors import ApiError
from ..resources import CATALOG, STORES
from .attempt_steps import SOURCE, new_operation_id
from .connect_sessions import SessionClaim
from .enrichment import enriched_config
from .failure_announcements import FAILURE_ANNOUNCEMENTS
from .flow_errors import FlowError
from .outbox_relay import RELAY

__all__ = [
    "SOURCE",
    "ConnectRefusedError",
    "record_auth_failure",
    "require_unspent_session",
    "store_connection",
    "unknown_connection",
    "written_and_announced",
]

log = get_logger(__name__)
UNCONFIRMED = Counter(
    "keyway_gateway_unconfirmed_writes_total",
    "Connection writes answered before the broker confirmed their event (broker away past the request deadline)",
)


def unknown_connection(env: Environment, connection_id: str, provider_config_key: str) -> ApiError:
    """The 404 of a connection that is not there, as the backend API and the proxy both answer it."""
    return ApiError(
        "unknown_connection",
        "No connection matching the provided params of 'connection_id' and 'provider_config_key'.",
        payload={"connectionId": connection_id, "providerConfigKey": provider_config_key, "environmentName": env.name},
    )


class ConnectRefusedError(ApiError, FlowError):
    """A connection its connect session may not write: the JSON routes answer it as their error
    envelope (ApiError), the popup callbacks as the SDK's error frame and page (FlowError)."""

    message: str

    def __init__(self, code: str, message: str, *, status: int) -> None:
        Exception.__init__(self, message)
        self.code = self.ws_type = code
        self.message = message
        self.status = status
        self.payload = None
        self.errors = None
        self.headers = {}


def _session_gone() -> ConnectRefusedError:
    return ConnectRefusedError(
        "unknown_connect_session_token", "The connect session is unknown, spent or expired.", status=401
    )


async def require_unspent_session(app: web.Application, session_id: str | None) -> None:
    """A flow a connect session started goes on only while the session is neither deleted nor spent."""
    if session_id is not None and not await app[STORES].connect_sessions.unspent(session_id):
        raise _session_gone()


async def written_and_announced(app: web.Application, row: OutboxRow, slot: tuple[str, str, str]) -> None:
    """After a connection write committed: drop this replica's entry, publish its event, and wait
    (within the request's deadline) for the broker's confirmation; see the module's docstring."""
    app[CONNECTION_CACHE].drop(*slot)
    app[RELAY].publish_soon([row])
    if not await app[RELAY].drained():
        UNCONFIRMED.inc()
        environment, provider_config_key, connection_id = slot
        log.warning(
            "write answered before the broker confirmed its event; it waits in the outbox",
            environment=environment,
            provider_config_key=provider_config_key,
            connection_id=connection_id,
        )


def _release_soon(app: web.Application, claim: SessionClaim) -> None:
    """Give the session back outside the request, whose deadline the database already outlasted."""

    async def release() -> None:
        backoff = Backoff(first=0.5, cap=5.0)
        for _ in range(5):
            try:
                await app[STORES].connect_sessions.release(claim)
                return
            except PyMongoError:
                await asyncio.sleep(backoff.next())
        log.warning("a connect session stays spent: the database did not come back to give it back")

    task = spawn_detached(release(), name="connect-session-release")
    _RELEASES.add(task)
    task.add_done_callback(_RELEASES.discard)


_RELEASES: set[asyncio.Task[None]] = set()


async def _claim(app: web.Application, session_id: str | None, connection: Connection) -> SessionClaim | None:
    """Spend the session (before the write), and make the connection its end user's, with the
    session's tags and webhook URL override (those it leaves unset, the connection keeps)."""
    if session_id is None:
        return None
    claim = await app[STORES].connect_sessions.claim(session_id)
    if claim is None:
        raise _session_gone()
    session = claim.session
    connection.end_user = session.owner()
    if session.tags is not None:
        connection.tags = dict(session.tags)
    if session.webhook_url_override is not None:
        connection.webhook_url_override = session.webhook_url_override or None  # "": the environment's again
    return claim


def _session_labels(claim: SessionClaim | None) -> dict[str, Any]:
    """The fields a session's write sets beside the credentials (Nango: a session's connection takes
    the session's tags and webhook URL override)."""
    if claim is None:
        return {}
    session = claim.session
    labels: dict[str, Any] = {}
    if session.tags is not None:
        labels |= tag_fields(session.tags)
    if session.webhook_url_override is not None:
        labels["webhook_url_override"] = session.webhook_url_override or None
    return labels


async def store_connection(
    app: web.Application,
    *,
    environment: str,
    provider_config_key: str,
    provider: str,
    auth_mode: AuthMode,
    connection_id: str,
    credentials: Credentials,
    connection_config: dict[str, Any],
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    operation_id: str | None = None,
    connect_session_id: str | None = None,
    imported: bool = False,
) -> tuple[Connection, bool]:
    """Fill what the template's post-connection program asks of the provider (``enrichment``), then
    insert or re-authorize the connection; emits connection.created or connection.updated (override).

    Every way a connection is written (each connect flow, a connect link, both import routes) comes
    here, so none can skip the enrichment; ``imported``: the caller's fields win over what it finds.
    """
    operation_id = operation_id or new_operation_id()
    connection_config = await enriched_config(
        app,
        environment=environment,
        provider_config_key=provider_config_key,
        provider=provider,
        connection_id=connection_id,
        operation_id=operation_id,
        credentials=credentials,
        connection_config=connection_config,
        given_wins=imported,
    )
    subject = f"{provider_config_key}/{connection_id}"

    def make(created: bool) -> CloudEvent[EventData]:
        fields: dict[str, Any] = {
            "connection_id": connection_id,
            "provider_config_key": provider_config_key,
            "provider": provider,
            "auth_mode": auth_mode,
            "operation_id": operation_id,
            "credentials_expire_at": expires_at,
        }
        # who the connection belongs to, as the write leaves it (the session's, or as stored)
        fields |= {k: v for k, v in connection.event_identity().items() if k not in fields}
        data: EventData = ConnectionCreated(**fields) if created else ConnectionUpdated(**fields, operation="override")
        kind = "connection.created" if created else "connection.updated"
        return make_event(data, type=kind, source=SOURCE, environment=environment, subject=subject)

    connection = Connection(
        environment=environment,
        provider_config_key=provider_config_key,
        connection_id=connection_id,
        provider=provider,
        auth_mode=auth_mode,
        credentials=credentials,
        connection_config=connection_config,
        credentials_expires_at=expires_at,
        metadata=metadata,
    )
    template = app[CATALOG].get(provider)
    buffer = template.token_expiration_buffer if template else None
    margin = timedelta(seconds=buffer) if buffer else DEFAULT_MARGIN
    claim = await _claim(app, connect_session_id, connection)
    try:
        saved, created, row = await app[STORES].connections.save_with_event(
            connection, make, refresh_margin=margin, for_session=claim is not None, labels=_session_labels(claim)
        )
    except BaseException as exc:
        if claim is not None:  # nothing was written: the user may try again
            if is_unavailability(exc) or isinstance(exc, asyncio.CancelledError):
                _release_soon(app, claim)
            else:
                await app[STORES].connect_sessions.release(claim)
        if isinstance(exc, ConnectionOwnedError):
            raise ConnectRefusedError(
                "connection_owned_elsewhere",
                "This connect session cannot write over a connection that belongs to another end user.",
                status=403,
            ) from None
        raise
    await written_and_announced(app, row, (environment, provider_config_key, connection_id))
    log.info(
        "connection stored",
        environment=environment,
        provider_config_key=provider_config_key,
        connection_id=connection_id,
        created=created,
    )
    return saved, created


async def record_auth_failure(
    app: web.Application,
    *,
    environment: str,
    error_type: str,
    description: str,
    provider_config_key: str | None = None,
    provider: str | None = None,
    auth_mode: AuthMode | None = None,
    connection_id: str | None = None,
    operation_id: str | None = None,
) -> None:
    """Announce a failed attempt (auth.failed): the auth webhook and the activity log follow from it.

    Within a budget per environment and client address (``failure_announcements``): past it the
    attempt is still answered, but a flood of failures is not multiplied into webhooks.
    """
    if not app[FAILURE_ANNOUNCEMENTS].admit(environment):
        return
    data = AuthFailed(
        connection_id=connection_id,
        provider_config_key=provider_config_key,
        provider=provider,
        auth_mode=auth_mode,
        operation_id=operation_id or new_operation_id(),
        error=ErrorInfo(type=error_type, description=description),
    )
    subject = f"{provider_config_key}/{connection_id}" if provider_config_key and connection_id else None
    event = make_event(data, type="auth.failed", source=SOURCE, environment=environment, subject=subject)
    row = await app[STORES].outbox.add(event)
    app[RELAY].publish_soon([row])
    log.info("auth attempt failed", environment=environment, provider_config_key=provider_config_key, error=error_type)
