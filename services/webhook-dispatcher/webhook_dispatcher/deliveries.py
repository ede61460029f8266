"""The record of every delivery attempt (``webhook_deliveries``), kept for a retention period.

Issue 6 reads these back through the API and adds the next attempt's time; the response body is
kept to 4 KB and redacted, since a receiver may echo anything back.
"""

from __future__ import annotations

from datetime import timedelta

from keyway_shared.events import utcnow
from keyway_shared.logging import redact
from keyway_shared.store import Database

from .sender import Attempt

__all__ = ["DeliveryLog"]


class DeliveryLog:
    def __init__(self, db: Database, *, retention: timedelta) -> None:
        self._col = db["webhook_deliveries"]
        self._retention = retention

    async def record(
        self,
        attempt: Attempt,
        *,
        delivery_id: str,
        webhook_id: str,
        event_id: str,
        event_type: str,
        environment: str,
        attempt_number: int,
    ) -> None:
        now = utcnow()
        await self._col.insert_one(
            {
                "delivery_id": delivery_id,
                "webhook_id": webhook_id,
                "event_id": event_id,
                "event_type": event_type,
                "environment": environment,
                "url": attempt.url,
                "attempt": attempt_number,
                "success": attempt.ok,
                "status": attempt.status,
                "duration_ms": attempt.duration_ms,
                "error_class": attempt.error_class,
                "error": attempt.error.model_dump(mode="json") if attempt.error else None,
                "response_body": redact(attempt.response_body) if attempt.response_body else None,
                "created_at": now,
                "expires_at": now + self._retention,
            }
        )
