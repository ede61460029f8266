"""When each connection's credentials fall due for refresh: ``refresh_due_at`` on its document.

This is the scheduling half of the refresher. The loop that claims due connections with a lease
and refreshes them arrives with issue 5; it finds its work with one query on the ``refresh_due``
index this module keeps current.

The stored expiry is the truth, the ``connection.*`` event only the wake-up: the handler re-reads
the connection and schedules from what it holds now, so events arriving late or out of order
cannot leave a stale due time behind, and handling an event twice changes nothing. The update is
conditional on the expiry it read, so a concurrent credential write (whose own event follows)
is never overwritten with an older schedule.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from keyway_shared.bus import MessageContext
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionUpdated
from keyway_shared.logging import get_logger
from keyway_shared.store import Database

__all__ = ["RefreshScheduler", "refresh_due_at"]

log = get_logger(__name__)


def refresh_due_at(expires_at: datetime, *, issued_at: datetime, margin: timedelta) -> datetime:
    """``margin`` before expiry; for credentials living less than twice the margin, halfway through."""
    remaining = expires_at - issued_at
    if remaining < 2 * margin:
        return issued_at + max(remaining, timedelta(0)) / 2
    return expires_at - margin


class RefreshScheduler:
    def __init__(self, db: Database, *, margin: timedelta) -> None:
        self._connections = db["connections"]
        self._margin = margin

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        data = event.data
        if not isinstance(data, ConnectionCreated | ConnectionUpdated):
            return  # a deleted connection takes its schedule with it
        key = {
            "environment": event.environment,
            "provider_config_key": data.provider_config_key,
            "connection_id": data.connection_id,
        }
        doc = await self._connections.find_one(key, {"credentials_expires_at": 1, "updated_at": 1})
        if doc is None:
            log.info("connection no longer exists; nothing to schedule")
            return
        expires_at: datetime | None = doc.get("credentials_expires_at")
        if expires_at is None:
            update: dict[str, Any] = {"$unset": {"refresh_due_at": ""}}
            due = None
        else:
            # "Remaining lifetime" counts from when these credentials were written.
            issued_at: datetime = doc.get("updated_at") or event.time
            due = refresh_due_at(expires_at, issued_at=issued_at, margin=self._margin)
            update = {"$set": {"refresh_due_at": due}}
        result = await self._connections.update_one(key | {"credentials_expires_at": expires_at}, update)
        if result.matched_count == 0:
            log.info("credentials changed meanwhile; their own event schedules them")
            return
        log.info("refresh scheduled" if due else "no refresh needed", refresh_due_at=due.isoformat() if due else None)
