"""Every webhook delivery attempt: written by the dispatcher, read by the API.

Two collections, both written with inserts only (on the embedded server an insert costs a
fraction of an update, and the dispatcher makes two writes per webhook):

    webhook_attempt_claims   ``_id`` = ``<delivery id>:<run>:<attempt>``, inserted *before* the POST.
                             The unique ``_id`` is what makes a delivery the bus handed over twice
                             go out once; ``lease_until`` lets a redelivered message take over an
                             attempt whose consumer died mid-POST.
    webhook_deliveries       the same ``_id``, inserted once the attempt is over: URL, status,
                             duration, error class, at most 4 KB of the answer, the next attempt's
                             time. An attempt with a claim and no record is in flight (or was cut
                             short by a crash, and is taken over).

Both expire (TTL indexes) after the retention period. A delivery is one event's webhook to one
endpoint (primary or secondary), so its id, and the ``webhook-id`` header derived from it, are the
same for every attempt and replay; the ids of an event's deliveries are computed, not looked up.

Writes from concurrent handlers are coalesced: while one ``bulk_write`` is in flight the next
batch gathers, so a quiet dispatcher pays one round trip per write and a busy one a fraction.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING, InsertOne
from pymongo.errors import BulkWriteError, PyMongoError

from ..group_commit import GroupCommit
from .client import Database, db_now

__all__ = [
    "MAX_REPLAY_DELIVERIES",
    "SLOTS",
    "Claim",
    "DeliveryLog",
    "attempt_key",
    "delivery_id",
    "public_attempt",
    "uuid5_text",
    "webhook_id",
]

_DUPLICATE_KEY = 11000
_DELIVERY_NAMESPACE = uuid.UUID("5b0c8f3e-7a1d-4e0b-9a65-0d3c1f6e2a47")
MAX_REPLAY_DELIVERIES = 10_000
SLOTS = ("primary", "secondary", "override")  # override: a connection's own webhook URL


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without the ``UUID`` object in between (a fifth of the cost:
    the dispatcher derives two per webhook)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def delivery_id(event_id: str, slot: str) -> str:
    """The same for one event and endpoint (primary or secondary) whoever computes it, whenever:
    retries and replays share it, even after the endpoint's URL was corrected."""
    return uuid5_text(_DELIVERY_NAMESPACE, f"{event_id}|{slot}")


def webhook_id(delivery: str) -> str:
    """The ``webhook-id`` header: a receiver deduplicates on it, so it never changes for a delivery."""
    return "msg_" + uuid.UUID(delivery).hex


def attempt_key(delivery: str, run: str, attempt: int) -> str:
    return f"{delivery}:{run}:{attempt}"


def _of_delivery(delivery: str) -> dict[str, Any]:
    # Every key of a delivery starts with "<id>:"; ";" is the character after ":", so this is a
    # range scan of the _id index.
    return {"_id": {"$gte": f"{delivery}:", "$lt": f"{delivery};"}}


@dataclass(frozen=True, kw_only=True)
class Claim:
    """Claiming an attempt: ours to make (``fresh``), or what someone else left (their lease, and
    the record if their attempt is over)."""

    key: str
    fresh: bool
    claimed_at: datetime
    lease_until: datetime | None = None
    record: dict[str, Any] | None = None


class _BulkWriter:
    """Coalesces single inserts into ``bulk_write`` calls; answers each with inserted / duplicate key.

    A :class:`~keyway_shared.group_commit.GroupCommit`: one ``bulk_write`` at a time, what arrives
    meanwhile waits for the next, and a batch started while idle lingers a moment (``linger``) for
    company before it goes. A command costs the driver about as much CPU as a few dozen documents,
    so under load this is most of what a write costs.
    """

    def __init__(self, db: Database, collection: str, *, max_batch: int = 1000, linger: float = 0.002) -> None:
        self._col = db[collection]
        self._commit: GroupCommit[dict[str, Any], bool | PyMongoError] = GroupCommit(
            self._flush, max_size=max_batch, linger=linger
        )

    async def insert(self, doc: dict[str, Any]) -> bool:
        """True once inserted; False when its ``_id`` exists. Other failures raise."""
        result = await self._commit.submit(doc)
        if isinstance(result, PyMongoError):
            raise result
        return result

    async def _flush(self, docs: list[dict[str, Any]]) -> list[bool | PyMongoError]:
        results: list[bool | PyMongoError] = [True] * len(docs)
        try:
            await self._col.bulk_write([InsertOne(doc) for doc in docs], ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                duplicate = error.get("code") == _DUPLICATE_KEY
                results[error["index"]] = False if duplicate else PyMongoError(str(error.get("errmsg", "write error")))
        return results  # any other failure raises, to every caller of the batch

    async def close(self) -> None:
        await self._commit.close()


class DeliveryLog:
    def __init__(self, db: Database, *, retention: timedelta = timedelta(days=15)) -> None:
        self._records = db["webhook_deliveries"]
        self._claims = db["webhook_attempt_claims"]
        self._record_writer = _BulkWriter(db, "webhook_deliveries")
        self._claim_writer = _BulkWriter(db, "webhook_attempt_claims")
        self._retention = retention

    async def close(self) -> None:
        await self._claim_writer.close()
        await self._record_writer.close()

    # -- the dispatcher's side ---------------------------------------------------------------

    async def claim(self, key: str, *, lease: timedelta) -> Claim:
        """Claim the attempt ``key`` before making it."""
        now = db_now()
        doc = {"_id": key, "lease_until": now + lease, "expires_at": now + self._retention}
        if await self._claim_writer.insert(doc):
            return Claim(key=key, fresh=True, claimed_at=now)
        existing = await self._claims.find_one({"_id": key})
        if existing is None:  # expired between the two calls: the attempt is ours after all
            return await self.claim(key, lease=lease)
        record = await self._records.find_one({"_id": key})
        return Claim(key=key, fresh=False, claimed_at=now, lease_until=existing["lease_until"], record=record)

    async def take_over(self, claim: Claim, *, lease: timedelta) -> bool:
        """Take an attempt whose consumer died; False when someone else took it first."""
        result = await self._claims.update_one(
            {"_id": claim.key, "lease_until": claim.lease_until}, {"$set": {"lease_until": db_now() + lease}}
        )
        return result.modified_count == 1

    async def record(self, claim: Claim, fields: dict[str, Any]) -> None:
        """Write what came of the attempt ``claim`` (a second record for one attempt is dropped)."""
        now = db_now()
        doc = fields | {
            "_id": claim.key,
            "created_at": claim.claimed_at,
            "finished_at": now,
            "expires_at": now + self._retention,
        }
        await self._record_writer.insert(doc)

    # -- the API's side ----------------------------------------------------------------------

    async def attempts(
        self,
        environment: str,
        *,
        filters: dict[str, Any] | None = None,
        before: tuple[datetime, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Attempts newest first; ``before`` is the (created_at, _id) of the last one already seen.

        A ``delivery_id`` or ``event_id`` filter reads the deliveries' key ranges, not the environment.
        """
        query: dict[str, Any] = {"environment": environment, **(filters or {})}
        deliveries: list[str] = []
        if "delivery_id" in query:
            deliveries = [query["delivery_id"]]
        elif "event_id" in query:
            deliveries = [delivery_id(query["event_id"], slot) for slot in SLOTS]
        if deliveries:
            query["$and"] = [{"$or": [_of_delivery(d) for d in deliveries]}]
        window: dict[str, datetime] = {}
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lte"] = until
        if window:
            query["created_at"] = window
        if before is not None:
            at, key = before
            query.setdefault("$and", []).append(
                {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": key}}]}
            )
        cursor = self._records.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor]

    async def latest(self, environment: str, delivery: str) -> dict[str, Any] | None:
        """The most recent attempt of a delivery (it carries the body, URL and event fields)."""
        found = await self.attempts(environment, filters={"delivery_id": delivery}, limit=1)
        return found[0] if found else None

    async def failed_since(
        self, environment: str, *, since: datetime, until: datetime | None = None, limit: int = MAX_REPLAY_DELIVERIES
    ) -> list[dict[str, Any]]:
        """The last attempt of each delivery whose latest outcome in the window is giving up."""
        window: dict[str, datetime] = {"$gte": since}
        if until is not None:
            window["$lte"] = until
        latest: dict[str, dict[str, Any]] = {}
        cursor = self._records.find({"environment": environment, "created_at": window}, {"response_body": 0})
        async for doc in cursor.sort("created_at", DESCENDING):
            latest.setdefault(doc["delivery_id"], doc)  # newest first: the first seen is the latest
        gave_up = [d for d in latest.values() if d.get("final") and not d.get("success")]
        gave_up.sort(key=lambda d: d["created_at"])
        return gave_up[:limit]


def public_attempt(doc: dict[str, Any]) -> dict[str, Any]:
    """An attempt as the API shows it: its id, no internal fields."""
    shown = {k: v for k, v in doc.items() if k not in {"_id", "retry_delay", "expires_at"}}
    shown["id"] = doc["_id"]
    return shown
