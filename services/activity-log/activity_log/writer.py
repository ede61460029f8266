"""Writing a batch of entries: bulk upserts of operations, one insert of messages.

Every write is idempotent, so a batch may be written again after a partial failure:

- a message's ``_id`` is its event id: a redelivered event is a duplicate key, ignored;
- an operation is upserted with ``$setOnInsert`` (its first state), ``$min``/``$max`` (times) and
  ``$set`` of facts that never change (type, environment, integration, connection);
- its state moves only forward, by a second, conditional update: ``waiting`` < ``running`` <
  terminal (``success``, ``failed``, ``timeout``), and between two terminal states the later event
  wins. Events may arrive in any order; the result is the same.

The order is one string field, ``state_order`` = ``<rank>|<event time>``, so "only forward" is a
single ``$lt`` beside the ``_id`` (an ``$or`` of rank and time defeats the ``_id`` lookup on some
servers). The conditional update is skipped for the entries whose upsert inserted the operation:
the insert already holds their state, and every other entry's upsert, hence its conditional
update, comes after that insert. Most operations are one event, so most events cost one upsert.
"""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from keyway_shared.logging import get_logger
from keyway_shared.store import Database

from .entries import TERMINAL_STATES, Entry

__all__ = ["DUPLICATE_KEY", "STATE_RANK", "ActivityWriter", "operation_upsert", "state_forward"]

DUPLICATE_KEY = 11000
STATE_RANK = {"waiting": 0, "running": 1, "success": 2, "failed": 2, "timeout": 2}

log = get_logger(__name__)


def _state_fields(entry: Entry) -> dict[str, Any]:
    state = entry.state or "waiting"
    # Fixed-width UTC time, so the string order is the (rank, time) order.
    order = f"{STATE_RANK[state]}|{entry.at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    fields: dict[str, Any] = {"state": state, "state_order": order}
    if state in TERMINAL_STATES:
        fields["ended_at"] = entry.at
    if state == "failed" and entry.error is not None:
        fields["error"] = entry.error
    return fields


def operation_upsert(entry: Entry) -> UpdateOne:
    """Create the operation in this entry's state, or touch its facts and times."""
    facts: dict[str, Any] = {"type": entry.operation_type, "environment": entry.environment}
    for name in ("provider_config_key", "provider", "connection_id"):
        value = getattr(entry, name)
        if value is not None:
            facts[name] = value
    return UpdateOne(
        {"_id": entry.operation_id},
        {
            "$set": facts,
            "$setOnInsert": _state_fields(entry),
            "$min": {"created_at": entry.at, "started_at": entry.at},
            "$max": {"updated_at": entry.at, "expires_at": entry.expires_at},
        },
        upsert=True,
    )


def state_forward(entry: Entry) -> UpdateOne | None:
    """Move an existing operation to this entry's state if that is forward; None if it names none."""
    if entry.state is None:
        return None
    fields = _state_fields(entry)
    update: dict[str, Any] = {"$set": fields}
    if "error" not in fields:
        update["$unset"] = {"error": ""}  # a later success supersedes an earlier failure
    return UpdateOne({"_id": entry.operation_id, "state_order": {"$lt": fields["state_order"]}}, update)


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
    def __init__(self, db: Database) -> None:
        self._operations = db["activity_operations"]
        self._messages = db["activity_messages"]

    async def write(self, entries: list[Entry]) -> None:
        """Store every entry of the batch, or raise (then the whole batch is retried)."""
        results = await asyncio.gather(
            self._write_messages([entry.message for entry in entries]),
            self._write_operations(entries),
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

    async def _write_operations(self, entries: list[Entry]) -> None:
        if not entries:
            return
        inserted = await self._upsert(entries)
        forwards = [op for i, entry in enumerate(entries) if i not in inserted and (op := state_forward(entry))]
        if forwards:
            await self._operations.bulk_write(forwards, ordered=False)

    async def _upsert(self, entries: list[Entry]) -> set[int]:
        """Upsert every entry's operation; the indexes of the entries whose upsert inserted it."""
        pending = list(range(len(entries)))
        inserted: set[int] = set()
        for round_ in range(3):
            ops = [operation_upsert(entries[i]) for i in pending]
            try:
                result = await self._operations.bulk_write(ops, ordered=False)
                inserted.update(pending[i] for i in result.upserted_ids or {})
                return inserted
            except BulkWriteError as exc:
                duplicates = _only_duplicates(exc)
                if duplicates is None or round_ == 2:
                    raise
                inserted.update(pending[int(u["index"])] for u in exc.details.get("upserted", []))
                # Two upserts of a new operation raced and one lost, unapplied: run the losers again;
                # the operation exists now, so they update it.
                pending = [pending[i] for i in duplicates]
        return inserted  # pragma: no cover - the loop returns or raises
