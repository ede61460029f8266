"""The ``connection.*`` consumer: re-derive a connection's ``refresh_due_at`` and wake the refresh loop.

The gateway already sets the due time when it writes credentials; this handler re-derives it from
what the document holds now (so a document written by older code, or a stale schedule, is put
right) and tells the loop, which may be asleep until a later time, that something is due earlier.

The stored expiry is the truth, the event only the wake-up: events arriving late or out of order
cannot leave a stale due time behind, and handling an event twice changes nothing. The update is
conditional on the expiry and attempt count it read, so neither a concurrent credential write nor
a failure backoff recorded meanwhile is overwritten. A connection with a failure pending keeps the
schedule its failure gave it (a retry after backoff, once a day, or never once exhausted).

Keep-alive: for a provider that revokes refresh tokens left unused (``refresh_token_idle_days``),
the due time is also never later than the keep-alive interval after the credentials were last
obtained (``credentials_obtained_at``: the authorization, an import or the last refresh), whether
they expire or not, as long as they hold a refresh token to keep alive. It rides on the same
``refresh_due_at`` and its index, so the loop needs no second query and the schedule survives
restarts; a refresh writes the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from keyway_shared.bus import MessageContext
from keyway_shared.cipher import DecryptionError
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionUpdated
from keyway_shared.group_commit import GroupCommit
from keyway_shared.logging import get_logger
from keyway_shared.refresh.policy import NEVER_REFRESHED, kept_alive, next_refresh_at, refresh_due_at
from keyway_shared.store import Connection, Database

__all__ = ["RefreshScheduler", "refresh_due_at"]

log = get_logger(__name__)

_FIELDS = {
    "_id": 1,
    "credentials_expires_at": 1,
    "credentials_obtained_at": 1,
    "updated_at": 1,
    "provider": 1,
    "refresh_attempt": 1,
    "refresh_due_at": 1,
    "refresh_lease_until": 1,
}
_KEY = {"environment": 1, "provider_config_key": 1, "connection_id": 1}


class RefreshScheduler:
    def __init__(
        self,
        db: Database,
        *,
        margin_for: Callable[[str], timedelta],
        keep_alive_for: Callable[[str], timedelta | None] = lambda _provider: None,
        decode: Callable[[dict[str, Any]], Connection] | None = None,
        wake: Callable[[datetime], None] = lambda _due: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``keep_alive_for``: the provider's keep-alive interval; ``decode``: the stored document as a
        connection with its credentials (whether they hold a refresh token), needed when there is one."""
        self._connections = db["connections"]
        self._margin_for = margin_for
        self._keep_alive_for = keep_alive_for
        self._decode = decode
        self._wake = wake
        self._clock = clock
        # Concurrent handlers (the queue's prefetch) share their reads: one find per integration.
        self._reads: GroupCommit[tuple[dict[str, str], bool], dict[str, Any] | None] = GroupCommit(self._read_batch)

    async def _read_batch(self, reads: list[tuple[dict[str, str], bool]]) -> list[dict[str, Any] | None]:
        """The documents of many events' connections, one query per integration and projection."""
        groups: dict[tuple[str, str, bool], list[str]] = {}
        for key, whole in reads:
            groups.setdefault((key["environment"], key["provider_config_key"], whole), []).append(key["connection_id"])
        found: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
        for (environment, provider_config_key, whole), ids in groups.items():
            query = {
                "environment": environment,
                "provider_config_key": provider_config_key,
                "connection_id": ids[0] if len(ids) == 1 else {"$in": ids},
            }
            async for doc in self._connections.find(query, None if whole else _FIELDS | _KEY):
                found[environment, provider_config_key, doc["connection_id"], whole] = doc
        return [found.get((*_slot(key), whole)) for key, whole in reads]

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        data = event.data
        if not isinstance(data, ConnectionCreated | ConnectionUpdated):
            return  # a deleted connection takes its schedule with it
        if data.auth_mode in NEVER_REFRESHED:
            # Nothing to derive: no expiry to refresh before and no refresh token to keep alive, and
            # the write that sent this event cleared the schedule (``ConnectionStore._write_fields``).
            # Not reading it saves the database a command per API-key or Basic connection written.
            return
        key = {
            "environment": event.environment,
            "provider_config_key": data.provider_config_key,
            "connection_id": data.connection_id,
        }
        # The whole document only where a keep-alive may apply: its credentials say if it can.
        keep_alive = self._keep_alive_for(data.provider) if self._decode is not None else None
        doc = await self._reads.submit((key, keep_alive is not None))
        if doc is None:
            log.info("connection no longer exists; nothing to schedule")
            return
        attempt = int(doc.get("refresh_attempt") or 0)
        lease_until: datetime | None = doc.get("refresh_lease_until")
        if attempt > 0 or (lease_until is not None and lease_until > self._clock.now()):
            # A failure set this schedule (backoff, a daily retry, or none once exhausted), or a
            # refresh holds the connection and writes the next one: keep it.
            self._wake_for(doc.get("refresh_due_at"))
            return
        expires_at: datetime | None = doc.get("credentials_expires_at")
        # "Remaining lifetime" counts from when these credentials were written; a refresh token's
        # idle time from when they were obtained (documents older than that field: the last write).
        issued_at: datetime = doc.get("updated_at") or event.time
        obtained_at: datetime | None = doc.get("credentials_obtained_at")
        due = next_refresh_at(
            expires_at,
            issued_at=issued_at,
            margin=self._margin_for(doc["provider"]),
            obtained_at=obtained_at or issued_at,
            keep_alive=keep_alive if keep_alive is not None and self._keeps_alive(doc) else None,
        )
        update: dict[str, Any] = (
            {"$unset": {"refresh_due_at": ""}} if due is None else {"$set": {"refresh_due_at": due}}
        )
        if not _same(due, doc.get("refresh_due_at")):
            # By _id: the embedded server scans the collection for the connection key plus conditions.
            # A refresh in between writes new credentials (and obtained time): its own write schedules them.
            condition = {
                "credentials_expires_at": expires_at,
                "credentials_obtained_at": obtained_at,
                "refresh_attempt": doc.get("refresh_attempt"),
            }
            result = await self._connections.update_one({"_id": doc["_id"]} | condition, update)
            if result.matched_count == 0:
                log.info("credentials or refresh state changed meanwhile; their own write schedules them")
                return
        self._wake_for(due)
        log.info("refresh scheduled" if due else "no refresh needed", refresh_due_at=due.isoformat() if due else None)

    def _keeps_alive(self, doc: dict[str, Any]) -> bool:
        if self._decode is None:
            return False
        try:
            return kept_alive(self._decode(doc).credentials)
        except DecryptionError:
            return False  # the refresh loop parks it with a reason when it falls due

    def _wake_for(self, due: datetime | None) -> None:
        if due is not None:
            self._wake(due)


def _slot(key: dict[str, str]) -> tuple[str, str, str]:
    return key["environment"], key["provider_config_key"], key["connection_id"]


def _same(due: datetime | None, stored: datetime | None) -> bool:
    """Equal as stored: MongoDB keeps milliseconds, and a due time a second off is not worth a write."""
    if due is None or stored is None:
        return due is stored
    return abs((due - stored).total_seconds()) < 1.0
