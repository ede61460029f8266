"""Ending unfinished operations: past its ``timeout_at`` a waiting or running operation becomes ``timeout``.

A connect attempt whose user closed the popup never hears back, so no event would ever end it.
The sweep reads candidates over the ``state_timeout`` index (``{state, timeout_at: range}``, one
index range each), then ends each with a conditional update on its ``_id`` and adds a message with
a fixed id: every replica may sweep at once, and an outcome that arrives in between wins (the
update requires the state it read; a later success or failure outranks ``timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError, PyMongoError

from keyway_shared.activity import word_key
from keyway_shared.backoff import Backoff, is_cancellation
from keyway_shared.events import utcnow
from keyway_shared.logging import get_logger
from keyway_shared.store import Database

from .writer import DUPLICATE_KEY, state_order

__all__ = ["TimeoutSweeper"]

log = get_logger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a lower bound keeps operations without a deadline out
_UNFINISHED = ("waiting", "running")


class TimeoutSweeper:
    def __init__(self, db: Database, *, every: float, retention: timedelta, batch: int = 500) -> None:
        self._operations = db["activity_operations"]
        self._messages = db["activity_messages"]
        self._every = every
        self._retention = retention
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self, now: datetime | None = None) -> int:
        """End every unfinished operation past its deadline; how many this call ended."""
        now = now or utcnow()
        ended = 0
        for state in _UNFINISHED:
            while True:
                candidates = [
                    doc
                    async for doc in self._operations.find(
                        {"state": state, "timeout_at": {"$gte": _EPOCH, "$lte": now}},
                        {"_id": 1, "timeout_at": 1, "created_at": 1, "environment": 1},
                    ).limit(self._batch)
                ]
                if not candidates:
                    break
                done = await self._end(state, candidates, now)
                ended += done
                if len(candidates) < self._batch or not done:
                    break
        return ended

    async def _end(self, state: str, candidates: list[dict[str, Any]], now: datetime) -> int:
        messages: list[dict[str, Any]] = []
        for doc in candidates:
            deadline: datetime = doc["timeout_at"]
            waited = (deadline - doc.get("created_at", deadline)).total_seconds()
            text = f"Timed out: nothing finished the attempt within {waited:g} s"
            env = str(doc.get("environment", ""))
            result = await self._operations.update_one(
                {"_id": doc["_id"], "state": state, "timeout_at": deadline},
                {
                    "$set": {
                        "state": "timeout",
                        "state_order": state_order("timeout", deadline),
                        "ended_at": deadline,
                        "updated_at": max(now, deadline),
                        "error": {"type": "timeout", "description": text},
                    },
                    "$addToSet": {"keys": {"$each": [word_key(env, "timeout"), word_key(env, "timed")]}},
                },
            )
            if not result.modified_count:
                continue  # an outcome arrived in between; it stands
            messages.append(
                {
                    "_id": f"{doc['_id']}:timeout",
                    "operation_id": doc["_id"],
                    "level": "error",
                    "message": text,
                    "created_at": deadline,
                    "event_type": "activity.timeout",
                    "source": "/keyway/activity-log",
                    "environment": env,
                    "expires_at": deadline + self._retention,
                }
            )
        if messages:
            try:
                await self._messages.insert_many(messages, ordered=False)
            except BulkWriteError as exc:
                if any(err.get("code") != DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
                    raise
            log.info("operations timed out", count=len(messages), state=state)
        return len(messages)

    async def _loop(self) -> None:
        # Ends only by cancellation: a failed sweep is logged and tried again, later while it keeps failing.
        backoff = Backoff(first=self._every, cap=max(self._every, 60.0))
        delay = self._every
        while True:
            await asyncio.sleep(delay)
            try:
                await self.sweep_once()
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                if isinstance(exc, PyMongoError):
                    log.warning("timeout sweep could not reach the database", error=exc.__class__.__name__)
                else:
                    log.exception("timeout sweep failed")
                continue
            backoff.reset()
            delay = self._every

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="activity-timeout-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
