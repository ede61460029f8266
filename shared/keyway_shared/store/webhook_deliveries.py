"""Every webhook delivery attempt (``webhook_deliveries``): written by the dispatcher, read by the API.

One document per attempt, ``_id`` = ``<delivery id>:<run>:<attempt>``. The dispatcher inserts it
(state ``sending``) *before* the POST: the unique ``_id`` is what makes a delivery the bus handed
over twice go out once, and a crash mid-POST leaves a ``sending`` record the redelivered message
takes over. After the POST the outcome is written into the same document. Documents expire with
``expires_at`` (a TTL index), so the log keeps a retention period, not everything.

Writes from concurrent handlers are coalesced: while one ``bulk_write`` is in flight the next
batch gathers, so a quiet dispatcher pays one round trip per write and a busy one a fraction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import DESCENDING, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from .client import Database, db_now

__all__ = ["MAX_REPLAY_DELIVERIES", "AttemptState", "Claim", "DeliveryLog", "attempt_key", "public_attempt"]

AttemptState = Literal["sending", "succeeded", "failed", "discarded"]
_DUPLICATE_KEY = 11000
MAX_REPLAY_DELIVERIES = 10_000


def attempt_key(delivery_id: str, run: str, attempt: int) -> str:
    return f"{delivery_id}:{run}:{attempt}"


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The outcome of claiming an attempt: ours to make, or the record someone else left."""

    key: str
    fresh: bool
    existing: dict[str, Any] | None = None


class _BulkWriter:
    """Coalesces single writes into ``bulk_write`` calls; answers each with applied / duplicate key."""

    def __init__(self, db: Database, collection: str, *, max_batch: int = 1000, max_in_flight: int = 2) -> None:
        self._col = db[collection]
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[InsertOne[Any] | UpdateOne, asyncio.Future[bool]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(self, op: InsertOne[Any] | UpdateOne) -> bool:
        """True once applied; False when an insert hit an existing ``_id``. Other failures raise."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._kick()
        return await future

    def _kick(self) -> None:
        while self._pending and len(self._flushes) < self._max_in_flight:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            task = asyncio.get_running_loop().create_task(self._flush(batch), name="webhook-deliveries-flush")
            self._flushes.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._kick()

    async def _flush(self, batch: list[tuple[InsertOne[Any] | UpdateOne, asyncio.Future[bool]]]) -> None:
        failed: dict[int, BaseException | None] = {}  # index -> error, None for a duplicate key
        try:
            await self._col.bulk_write([op for op, _ in batch], ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                duplicate = error.get("code") == _DUPLICATE_KEY
                failed[error["index"]] = None if duplicate else PyMongoError(str(error.get("errmsg", "write error")))
        except Exception as exc:
            failed = dict.fromkeys(range(len(batch)), exc)
        for index, (_op, future) in enumerate(batch):
            if future.done():  # its handler was cancelled meanwhile
                continue
            if index not in failed:
                future.set_result(True)
            elif (error := failed[index]) is None:
                future.set_result(False)
            else:
                future.set_exception(error)

    async def close(self) -> None:
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)


class DeliveryLog:
    def __init__(self, db: Database, *, retention: timedelta = timedelta(days=15)) -> None:
        self._col = db["webhook_deliveries"]
        self._writer = _BulkWriter(db, "webhook_deliveries")
        self._retention = retention

    async def close(self) -> None:
        await self._writer.close()

    # -- the dispatcher's side ---------------------------------------------------------------

    async def claim(self, record: dict[str, Any], *, lease: timedelta) -> Claim:
        """Insert an attempt about to be made (``record`` holds the delivery's fields and ``attempt``)."""
        key = attempt_key(record["delivery_id"], record["run"], record["attempt"])
        now = db_now()
        doc = record | {
            "_id": key,
            "state": "sending",
            "success": None,
            "final": False,
            "lease_until": now + lease,
            "created_at": now,
            "expires_at": now + self._retention,
        }
        if await self._writer.write(InsertOne(doc)):
            return Claim(key=key, fresh=True)
        existing = await self._col.find_one({"_id": key})
        if existing is None:  # expired between the two calls: the attempt is ours after all
            return await self.claim(record, lease=lease)
        return Claim(key=key, fresh=False, existing=existing)

    async def take_over(self, claim: Claim, *, lease: timedelta) -> bool:
        """Take a ``sending`` attempt whose consumer died; False when someone else took it first."""
        assert claim.existing is not None
        result = await self._col.update_one(
            {"_id": claim.key, "state": "sending", "lease_until": claim.existing["lease_until"]},
            {"$set": {"lease_until": db_now() + lease}},
        )
        return result.modified_count == 1

    async def finish(self, key: str, outcome: dict[str, Any]) -> None:
        """Write what came of an attempt (``state``, ``success``, ``final``, status, error, …)."""
        await self._writer.write(UpdateOne({"_id": key}, {"$set": outcome | {"finished_at": db_now()}}))

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
        """Attempts newest first; ``before`` is the (created_at, _id) of the last one already seen."""
        query: dict[str, Any] = {"environment": environment, **(filters or {})}
        window: dict[str, datetime] = {}
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lte"] = until
        if window:
            query["created_at"] = window
        if before is not None:
            at, key = before
            query["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": key}}]
        cursor = self._col.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor]

    async def latest(self, environment: str, delivery_id: str) -> dict[str, Any] | None:
        """The most recent attempt of a delivery (it carries the body, URL and event fields)."""
        cursor = self._col.find({"delivery_id": delivery_id, "environment": environment}).sort("created_at", -1)
        async for doc in cursor.limit(1):
            return doc
        return None

    async def failed_since(
        self, environment: str, *, since: datetime, until: datetime | None = None, limit: int = MAX_REPLAY_DELIVERIES
    ) -> list[dict[str, Any]]:
        """The last attempt of each delivery that gave up in the window and never succeeded after."""
        window: dict[str, datetime] = {"$gte": since}
        if until is not None:
            window["$lte"] = until
        query = {"environment": environment, "final": True, "success": False, "finished_at": window}
        latest: dict[str, dict[str, Any]] = {}
        async for doc in self._col.find(query).sort("finished_at", -1).limit(limit * 2):
            latest.setdefault(doc["delivery_id"], doc)
            if len(latest) >= limit:
                break
        if not latest:
            return []
        succeeded = self._col.find(
            {"delivery_id": {"$in": list(latest)}, "success": True}, {"delivery_id": 1, "finished_at": 1}
        )
        async for doc in succeeded:
            failure = latest.get(doc["delivery_id"])
            if failure is not None and doc.get("finished_at") and doc["finished_at"] >= failure["finished_at"]:
                del latest[doc["delivery_id"]]
        return list(latest.values())


def public_attempt(doc: dict[str, Any]) -> dict[str, Any]:
    """An attempt as the API shows it: no lease, no internal keys."""
    shown = {k: v for k, v in doc.items() if k not in {"_id", "lease_until", "retry_delay"}}
    shown["id"] = doc["_id"]
    return shown
