"""Writing a batch of entries: one insert of messages, operations inserted or else upserted.

Every write is idempotent, so a batch may be written again after a partial failure (or after a
MongoDB restart lost the answer to a write that was applied):

- a message's ``_id`` is its event id: a redelivered event is a duplicate key, ignored;
- the entries of one operation in the batch are merged first (times, facts, search keys, the
  furthest state), and the merged operation is inserted whole: most operations are new, and one
  ``insert_many`` costs what raw inserts cost;
- an operation that exists already (a duplicate key) is upserted instead, with ``$setOnInsert``
  (its first state), ``$min``/``$max`` (times), ``$set`` of facts that never change and
  ``$addToSet`` of search keys;
- its state then moves only forward, by a conditional update: ``waiting`` < ``running`` <
  ``timeout`` < ``success``/``failed``, and between two of the last the later event wins. A
  ``timeout`` yields to any real outcome: the callback may have come late rather than never.

The order is one string field, ``state_order`` = ``<rank>|<event time>``, so "only forward" is a
single ``$lt`` beside the ``_id`` (an ``$or`` of rank and time defeats the ``_id`` lookup on the
embedded server). Writes are journaled (``DURABLE``) because the broker message is acknowledged
after them. A lost connection to MongoDB is retried here a few times before the batch fails, so a
database restart costs a pause rather than a round of broker retries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, ConnectionFailure

from keyway_shared.activity import operation_keys
from keyway_shared.logging import get_logger
from keyway_shared.store import Database

from .entries import TERMINAL_STATES, Entry

__all__ = ["DUPLICATE_KEY", "DURABLE", "STATE_RANK", "ActivityWriter", "Merged", "merge", "state_order"]

DUPLICATE_KEY = 11000
# A batch is acknowledged to the broker once it is written, so "written" must survive a crash of
# the database: journaled, and on a majority of a replica set. An unjournaled write was measured
# lost after a SIGKILL of the embedded server (tests/integration/test_activity_restart.py).
DURABLE = WriteConcern(w="majority", j=True)
STATE_RANK = {"waiting": 0, "running": 1, "timeout": 2, "success": 3, "failed": 3}

log = get_logger(__name__)


def state_order(state: str, at: datetime) -> str:
    # Fixed-width UTC time (``2026-01-31T12:00:00.000000Z``), so the string order is the (rank,
    # time) order. isoformat is several times cheaper than strftime; ``[:26]`` drops its "+00:00".
    return f"{STATE_RANK[state]}|{at.astimezone(UTC).isoformat(timespec='microseconds')[:26]}Z"


@dataclass
class Merged:
    """The entries of one operation within a batch, folded into the write they add up to."""

    operation_id: str
    facts: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    timeout_at: datetime | None
    state: tuple[str, str, dict[str, str] | None, datetime] | None  # (state, order, error, at)
    keys: dict[str, None] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        for name in ("provider_config_key", "provider", "connection_id"):
            value = getattr(entry, name)
            if value is not None:
                self.facts[name] = value
        self.created_at = min(self.created_at, entry.at)
        self.updated_at = max(self.updated_at, entry.at)
        self.expires_at = max(self.expires_at, entry.expires_at)
        if entry.timeout_at is not None:
            self.timeout_at = min(self.timeout_at or entry.timeout_at, entry.timeout_at)
        if entry.state is not None:
            order = state_order(entry.state, entry.at)
            if self.state is None or order > self.state[1]:
                self.state = (entry.state, order, entry.error, entry.at)
        keys = operation_keys(
            entry.environment,
            operation_type=entry.operation_type,
            provider_config_key=self.facts.get("provider_config_key"),
            connection_id=self.facts.get("connection_id"),
            message_words=entry.words,
        )
        self.keys.update(dict.fromkeys(keys))

    def state_fields(self) -> dict[str, Any]:
        state, order, error, at = self.state or ("waiting", state_order("waiting", self.created_at), None, None)
        fields: dict[str, Any] = {"state": state, "state_order": order}
        if state in TERMINAL_STATES and at is not None:
            fields["ended_at"] = at
        if state == "failed" and error is not None:
            fields["error"] = error
        return fields

    def document(self) -> dict[str, Any]:
        """The operation as the first write of it stores it."""
        doc: dict[str, Any] = {
            "_id": self.operation_id,
            **self.facts,
            **self.state_fields(),
            "created_at": self.created_at,
            "started_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "keys": list(self.keys),
        }
        if self.timeout_at is not None:
            doc["timeout_at"] = self.timeout_at
        return doc

    def upsert(self) -> UpdateOne:
        """Touch an existing operation's facts, times and keys (or create it, if it vanished)."""
        earliest: dict[str, Any] = {"created_at": self.created_at, "started_at": self.created_at}
        if self.timeout_at is not None:
            earliest["timeout_at"] = self.timeout_at
        return UpdateOne(
            {"_id": self.operation_id},
            {
                "$set": self.facts,
                "$setOnInsert": self.state_fields(),
                "$min": earliest,
                "$max": {"updated_at": self.updated_at, "expires_at": self.expires_at},
                "$addToSet": {"keys": {"$each": list(self.keys)}},
            },
            upsert=True,
        )

    def state_forward(self) -> UpdateOne | None:
        """Move the operation to the merged state if that is forward; None if no entry named one."""
        if self.state is None:
            return None
        fields = self.state_fields()
        update: dict[str, Any] = {"$set": fields}
        if "error" not in fields:
            update["$unset"] = {"error": ""}  # a later success supersedes an earlier failure
        return UpdateOne({"_id": self.operation_id, "state_order": {"$lt": fields["state_order"]}}, update)


def merge(entries: list[Entry]) -> list[Merged]:
    merged: dict[str, Merged] = {}
    for entry in entries:
        item = merged.get(entry.operation_id)
        if item is None:
            item = merged[entry.operation_id] = Merged(
                operation_id=entry.operation_id,
                facts={"type": entry.operation_type, "environment": entry.environment},
                created_at=entry.at,
                updated_at=entry.at,
                expires_at=entry.expires_at,
                timeout_at=None,
                state=None,
            )
        item.add(entry)
    return list(merged.values())


def _only_duplicates(exc: BulkWriteError) -> list[int] | None:
    """Indexes of the duplicate-key failures, or None when anything else failed too."""
    details = exc.details
    if details.get("writeConcernErrors"):
        return None
    errors = details.get("writeErrors", [])
    if any(err.get("code") != DUPLICATE_KEY for err in errors):
        return None
    return [int(err["index"]) for err in errors]


class ActivityWriter:
    def __init__(self, db: Database, *, attempts: int = 4, backoff: float = 0.5) -> None:
        self._operations = db.get_collection("activity_operations", write_concern=DURABLE)
        self._messages = db.get_collection("activity_messages", write_concern=DURABLE)
        self._attempts = attempts
        self._backoff = backoff

    async def write(self, entries: list[Entry]) -> None:
        """Store every entry of the batch, or raise (then every message of the batch is retried)."""
        for attempt in range(1, self._attempts + 1):
            try:
                await self._write_once(entries)
                return
            except ConnectionFailure as exc:
                if attempt == self._attempts:
                    raise
                log.warning("activity batch not stored; trying again", error=exc.__class__.__name__, attempt=attempt)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _write_once(self, entries: list[Entry]) -> None:
        results = await asyncio.gather(
            self._write_messages([entry.message for entry in entries]),
            self._write_operations(merge(entries)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _write_messages(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        try:
            await self._messages.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            duplicates = _only_duplicates(exc)
            if duplicates is None:
                raise
            log.debug("skipped activity messages already stored", duplicates=len(duplicates))

    async def _write_operations(self, operations: list[Merged]) -> None:
        if not operations:
            return
        try:
            await self._operations.insert_many([op.document() for op in operations], ordered=False)
            return
        except BulkWriteError as exc:
            duplicates = _only_duplicates(exc)
            if duplicates is None:
                raise
        existing = [operations[i] for i in duplicates]
        await self._upsert(existing)
        forwards = [op for item in existing if (op := item.state_forward()) is not None]
        if forwards:
            await self._operations.bulk_write(forwards, ordered=False)

    async def _upsert(self, operations: list[Merged]) -> None:
        pending = operations
        for round_ in range(3):
            try:
                await self._operations.bulk_write([op.upsert() for op in pending], ordered=False)
                return
            except BulkWriteError as exc:
                duplicates = _only_duplicates(exc)
                if duplicates is None or round_ == 2:
                    raise
                # Two upserts of a vanished operation raced and one lost: run the losers again; the
                # operation exists now, so they update it.
                pending = [pending[i] for i in duplicates]
