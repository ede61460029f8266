"""Which events a consumer has handled, so a redelivered event is skipped, not handled twice.

A claim is an insert keyed by ``<queue>|<event id>``: the unique ``_id`` makes two consumers racing
for the same event disagree safely. A claim left behind by a consumer that died expires after its
lease, and a completed record expires after ``retention`` (the TTL index), long after any
redelivery could arrive.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from ..bus.consumer import Claim
from ..events import utcnow
from .client import Database

__all__ = ["MongoIdempotencyGuard"]


class MongoIdempotencyGuard:
    def __init__(
        self, db: Database, *, lease: timedelta = timedelta(minutes=2), retention: timedelta = timedelta(days=7)
    ) -> None:
        self._col = db["processed_events"]
        self._lease = lease
        self._retention = retention

    async def claim(self, consumer: str, event_id: str) -> Claim:
        key = f"{consumer}|{event_id}"
        now = utcnow()
        try:
            await self._col.insert_one(
                {"_id": key, "state": "handling", "lease_until": now + self._lease, "expires_at": now + self._retention}
            )
            return Claim.CLAIMED
        except DuplicateKeyError:
            pass
        taken = await self._col.find_one_and_update(
            {"_id": key, "state": "handling", "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + self._lease}},
        )
        if taken is not None:
            return Claim.CLAIMED
        doc = await self._col.find_one({"_id": key}, {"state": 1})
        if doc is None:  # released between our insert and our read: try once more
            return await self.claim(consumer, event_id)
        return Claim.DONE if doc.get("state") == "done" else Claim.BUSY

    async def complete(self, consumer: str, event_id: str) -> None:
        await self._col.update_one(
            {"_id": f"{consumer}|{event_id}"}, {"$set": {"state": "done", "expires_at": utcnow() + self._retention}}
        )

    async def release(self, consumer: str, event_id: str) -> None:
        await self._col.delete_one({"_id": f"{consumer}|{event_id}", "state": "handling"})
