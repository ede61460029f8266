"""Refreshing one connection, exactly once however many callers ask at the same moment.

Both the gateway (refresh on read, ``force_refresh``) and the token-refresher (in the background)
come through here. A caller takes the connection's lease, re-reads it, and only then decides: if a
sibling refreshed while it waited, it uses those credentials instead of spending the refresh token
again. The new credentials are written with a compare-and-swap on the ciphertext that was read, in
one transaction with the ``token.refreshed`` event.

Failures are classified (webhooks-and-refresh §5): transient ones (network, timeout, 5xx, 429) back
off and leave the connection usable while its token is; a refused refresh token, after a re-read
shows no sibling won, marks the connection failed, is retried once a day, and after four failing
days is exhausted until the user reconnects.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp

from ..cipher import DecryptionError
from ..clock import SYSTEM_CLOCK, Clock
from ..credentials import PermanentTokenError, TokenRequestError, TransientTokenError
from ..deadline import beyond_deadline
from ..events import CloudEvent, ErrorInfo, TokenRefreshed, TokenRefreshFailed, make_event
from ..logging import get_logger
from ..providers import ProviderCatalog
from ..store import Connection, IntegrationStore, OutboxRow, RefreshState, RefreshStateStore
from .lease import kept_lease
from .policy import (
    DEFAULT_MARGIN,
    EXHAUSTED_AFTER_DAYS,
    is_due,
    keep_alive_interval,
    kept_alive,
    next_refresh_at,
    transient_backoff,
)
from .renew import renew

__all__ = ["DueOutcome", "RefreshError", "RefreshOutcome", "RefreshService", "connection_key"]

log = get_logger(__name__)


def connection_key(environment: str, provider_config_key: str, connection_id: str) -> dict[str, Any]:
    return {"environment": environment, "provider_config_key": provider_config_key, "connection_id": connection_id}


class RefreshError(Exception):
    """The refresh did not produce usable credentials; ``type`` is the code callers report."""

    def __init__(self, type: str, description: str, *, transient: bool = False, exhausted: bool = False) -> None:
        super().__init__(description)
        self.type = type
        self.description = description
        self.transient = transient
        self.exhausted = exhausted


@dataclass(frozen=True, kw_only=True)
class RefreshOutcome:
    connection: Connection
    refreshed: bool  # False: the credentials were fresh enough, or a sibling had just refreshed them
    failure: Literal["transient", "refused", "exhausted"] | None = None  # set when the provider call failed


# What one background attempt came to; the refresher counts these (its metric's ``outcome`` label).
DueOutcome = Literal[
    "refreshed",  # new credentials stored
    "unchanged",  # a sibling or a reconnect wrote newer credentials meanwhile: nothing to do
    "transient",  # network, timeout, 5xx, 429: backed off, the token stays usable while it lives
    "refused",  # the provider refused the refresh token: marked failed, retried in a day
    "exhausted",  # refused for the fourth day: left alone until the user reconnects
    "bad_data",  # undecryptable credentials or a vanished connection: parked with a reason
    "not_claimed",  # no longer due, or another replica holds the lease
]


class RefreshService:
    def __init__(
        self,
        *,
        state: RefreshStateStore,
        integrations: IntegrationStore,
        catalog: ProviderCatalog,
        http: aiohttp.ClientSession,
        publish_soon: Callable[[list[OutboxRow]], None],
        owner: str,
        source: str,
        lease: timedelta = timedelta(seconds=60),
        timeout_seconds: float = 15.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._state = state
        self._integrations = integrations
        self._catalog = catalog
        self._http = http
        self._publish_soon = publish_soon
        self._owner = owner
        self._source = source
        self._lease = lease
        self._timeout = timeout_seconds
        self._clock = clock

    def margin_for(self, provider: str) -> timedelta:
        template = self._catalog.get(provider)
        buffer = template.token_expiration_buffer if template else None
        return timedelta(seconds=buffer) if buffer else DEFAULT_MARGIN

    def keep_alive_for(self, provider: str) -> timedelta | None:
        """How often this provider's refresh tokens must be used to stay alive (None: no such rule)."""
        template = self._catalog.get(provider)
        return keep_alive_interval(template.refresh_token_idle_days if template else None)

    async def refresh(self, key: dict[str, Any], *, force: bool, wait_seconds: float = 12.0) -> RefreshOutcome:
        """Refresh-on-read: only when forced or due; waits (bounded) for a sibling's lease."""
        conn, state = await self._read(key)
        now = self._clock.now()
        if not conn.credentials.refreshable:
            return RefreshOutcome(connection=conn, refreshed=False)
        if not force and not is_due(conn.refresh_due_at, conn.credentials_expires_at, now=now):
            return RefreshOutcome(connection=conn, refreshed=False)
        if state.exhausted:
            raise RefreshError(
                "refresh_exhausted", "Refreshing failed for 4 days; the user must reconnect.", exhausted=True
            )
        if not force and state.failed and conn.refresh_due_at is not None and conn.refresh_due_at > now:
            # Refused earlier and not due for another try yet: report that, don't spend a call on it.
            error = state.error or {}
            raise RefreshError("refresh_token_external_error", error.get("description", "The last refresh failed."))
        first_read = conn.credentials.dump()
        # From here on by ``_id``: the embedded server plans the connection key plus any other
        # condition (lease, ciphertext) as a collection scan, ``_id`` plus conditions as a lookup.
        key = {"_id": state.doc_id}
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not await self._state.acquire(key, owner=self._owner, lease=self._lease):
            if asyncio.get_running_loop().time() > deadline:
                raise RefreshError(
                    "refresh_lock_timeout", "Another refresh of this connection is taking too long.", transient=True
                )
            await asyncio.sleep(0.05)
        # Held, the refresh runs outside the calling request's deadline (keyway_shared.deadline):
        # once the provider rotated the refresh token, the write of the new one holds its only copy
        # and must get the driver's whole patience, and the lease must be released, whatever the
        # request's remaining seconds; it runs on to its end if the request goes away.
        return await beyond_deadline(self._refresh_holding(key, first_read))

    async def _refresh_holding(self, key: dict[str, Any], first_read: dict[str, Any]) -> RefreshOutcome:
        try:
            conn, state = await self._read(key)
            if conn.credentials.dump() != first_read:
                # A sibling refreshed (or the user reconnected) while we waited: use theirs. Compared
                # decrypted, since `keyway keys rotate` changes the ciphertext and nothing else.
                return RefreshOutcome(connection=conn, refreshed=False)
            async with self._lease_kept(key, due_too=False):
                return await self._refresh_held(key, conn, state, raise_errors=True)
        finally:
            await self._state.release(key, owner=self._owner)

    async def refresh_due(self, doc_id: Any) -> DueOutcome:
        """Background path: claim the connection if it is still due, refresh it, never raise."""
        key = {"_id": doc_id}
        doc = await self._state.claim_due(doc_id, owner=self._owner, lease=self._lease)
        if doc is None:
            return "not_claimed"  # another replica took it, or it is no longer due
        released = False  # a stored refresh clears the lease in the same write: no release then
        try:
            try:
                conn, state = self._state.decode(doc)
            except DecryptionError as exc:
                await self._park_unreadable(key, exc)
                return "bad_data"
            if state.exhausted:
                # Something scheduled it again (exhausted connections carry no due time): park it
                # instead of claiming it again every lease period.
                await self._state.record_failure(
                    key,
                    expected_ciphertext=state.ciphertext,
                    error=state.error or {"type": "refresh_exhausted", "description": "Refreshing failed for 4 days."},
                    due=None,
                    failed=True,
                    failed_days=state.failed_days,
                    last_failed_day=state.last_failed_day,
                    exhausted=True,
                    attempt=state.attempt,
                    event=None,
                )
                return "exhausted"
            async with self._lease_kept(key, due_too=True):
                outcome = await self._refresh_held(key, conn, state, raise_errors=False)
            released = outcome.refreshed
            if outcome.failure is not None:
                return outcome.failure
            return "refreshed" if outcome.refreshed else "unchanged"
        finally:
            if not released:
                await self._state.release(key, owner=self._owner)

    def _lease_kept(self, key: dict[str, Any], *, due_too: bool) -> AbstractAsyncContextManager[None]:
        return kept_lease(
            functools.partial(self._state.extend_lease, key, owner=self._owner, lease=self._lease, due_too=due_too),
            self._lease,
            clock=self._clock,
        )

    async def _read(self, key: dict[str, Any]) -> tuple[Connection, RefreshState]:
        try:
            found = await self._state.read(key)
        except DecryptionError as exc:
            await self._park_unreadable(key, exc)
            raise RefreshError("invalid_stored_credentials", "The stored credentials cannot be decrypted.") from None
        if found is None:
            raise RefreshError("unknown_connection", "The connection no longer exists.")
        return found

    async def _refresh_held(
        self, key: dict[str, Any], conn: Connection, state: RefreshState, *, raise_errors: bool
    ) -> RefreshOutcome:
        now = self._clock.now()
        template = self._catalog.get(conn.provider)
        integration = await self._integrations.get(conn.environment, conn.provider_config_key)
        try:
            if template is None or integration is None:
                raise PermanentTokenError(
                    "unknown_provider_config", "The integration or its provider template is gone."
                )
            credentials, expires_at = await renew(
                self._http,
                connection=conn,
                template=template,
                integration=integration,
                now=now,
                timeout_seconds=self._timeout,
            )
        except TransientTokenError as exc:
            await self._transient_failure(key, conn, state, exc, now)
            # Credentials without an expiry still work too (a keep-alive refresh of them failed).
            if raise_errors and conn.credentials_expires_at is not None and conn.credentials_expires_at <= now:
                raise RefreshError(exc.type, exc.description, transient=True) from None
            return RefreshOutcome(connection=conn, refreshed=False, failure="transient")  # the token still works
        except TokenRequestError as exc:
            sibling = await self._state.read(key)
            if sibling is not None and sibling[1].ciphertext != state.ciphertext:
                return RefreshOutcome(connection=sibling[0], refreshed=False)  # a sibling won the race
            exhausted = await self._permanent_failure(key, conn, state, exc, now)
            if raise_errors:
                raise RefreshError("refresh_token_external_error", exc.description, exhausted=exhausted) from None
            return RefreshOutcome(connection=conn, refreshed=False, failure="exhausted" if exhausted else "refused")
        # The refresh token was used just now: a keep-alive (if the provider idles them out) counts from now.
        due = next_refresh_at(
            expires_at,
            issued_at=now,
            margin=self.margin_for(conn.provider),
            obtained_at=now,
            keep_alive=self.keep_alive_for(conn.provider) if kept_alive(credentials) else None,
        )
        event = make_event(
            TokenRefreshed(
                **conn.event_identity(),
                credentials_expire_at=expires_at,
                recovered=state.failed,
                attempt=state.attempt + 1,
            ),
            type="token.refreshed",
            source=self._source,
            environment=conn.environment,
            subject=f"{conn.provider_config_key}/{conn.connection_id}",
        )
        # The provider has rotated the refresh token: this write holds the only copy of the new one.
        # The driver retries it through an outage for up to two minutes, and the lease is kept meanwhile.
        row = await self._state.save_refreshed(
            key,
            conn,
            expected_ciphertext=state.ciphertext,
            credentials=credentials,
            expires_at=expires_at,
            due=due,
            event=event,
        )
        if row is None:
            fresh = await self._state.read(key)  # new credentials arrived meanwhile (a reconnect): keep them
            return RefreshOutcome(connection=fresh[0] if fresh else conn, refreshed=False)
        self._publish_soon([row])
        conn.credentials = credentials
        conn.credentials_expires_at = expires_at
        conn.updated_at = self._clock.now()
        conn.refresh_due_at = due
        log.info(
            "credentials refreshed", provider_config_key=conn.provider_config_key, connection_id=conn.connection_id
        )
        return RefreshOutcome(connection=conn, refreshed=True)

    async def _park_unreadable(self, key: dict[str, Any], exc: DecryptionError) -> None:
        """Park it and tell the app once (token.refresh_failed): it will not refresh until reconnected."""

        def announce(doc: dict[str, Any]) -> CloudEvent[Any]:
            return make_event(
                TokenRefreshFailed(
                    connection_id=doc["connection_id"],
                    provider_config_key=doc["provider_config_key"],
                    provider=doc["provider"],
                    auth_mode=doc["auth_mode"],
                    credentials_expire_at=doc.get("credentials_expires_at"),
                    error=ErrorInfo(
                        type="invalid_stored_credentials",
                        description="The stored credentials cannot be decrypted; the user must reconnect.",
                    ),
                    failed_days=int(doc.get("refresh_failed_days") or 0) or 1,
                    exhausted=True,
                ),
                type="token.refresh_failed",
                source=self._source,
                environment=doc["environment"],
                subject=f"{doc['provider_config_key']}/{doc['connection_id']}",
            )

        row = await self._state.mark_unreadable(
            key, f"The stored credentials cannot be decrypted: {exc}", announce=announce
        )
        if row is not None:
            self._publish_soon([row])
        log.warning("connection cannot be refreshed", reason="undecryptable credentials")

    async def _transient_failure(
        self, key: dict[str, Any], conn: Connection, state: RefreshState, exc: TransientTokenError, now: datetime
    ) -> None:
        attempt = state.attempt + 1
        due = now + transient_backoff(attempt, retry_after=exc.retry_after)
        log.warning("refresh failed; will retry", error=exc.type, retry_at=due.isoformat(), attempt=attempt)
        await self._state.record_failure(
            key,
            expected_ciphertext=state.ciphertext,
            error={"type": exc.type, "description": exc.description},
            due=due,
            failed=state.failed,
            failed_days=state.failed_days,
            last_failed_day=state.last_failed_day,
            exhausted=False,
            attempt=attempt,
            event=None,
        )

    async def _permanent_failure(
        self, key: dict[str, Any], conn: Connection, state: RefreshState, exc: TokenRequestError, now: datetime
    ) -> bool:
        today = now.date().isoformat()
        days = state.failed_days + (0 if state.last_failed_day == today else 1)  # at most one count per day
        exhausted = days >= EXHAUSTED_AFTER_DAYS
        event = make_event(
            TokenRefreshFailed(
                **conn.event_identity(),
                credentials_expire_at=conn.credentials_expires_at,
                error=ErrorInfo(type="refresh_token_external_error", description=exc.description),
                failed_days=days,
                exhausted=exhausted,
            ),
            type="token.refresh_failed",
            source=self._source,
            environment=conn.environment,
            subject=f"{conn.provider_config_key}/{conn.connection_id}",
        )
        log.warning("refresh refused by the provider", error=exc.type, failed_days=days, exhausted=exhausted)
        row = await self._state.record_failure(
            key,
            expected_ciphertext=state.ciphertext,
            error={"type": exc.type, "description": exc.description},
            due=None if exhausted else now + timedelta(days=1),
            failed=True,
            failed_days=days,
            last_failed_day=today,
            exhausted=exhausted,
            attempt=state.attempt + 1,
            event=event,
        )
        if row is not None:
            self._publish_soon([row])
        return exhausted
