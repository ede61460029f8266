"""Writing a batch of entries: one bulk upsert of operations and one insert of messages.

Every write is idempotent, so a batch may be written again after a partial failure:

- a message's ``_id`` is its event id: a redelivered event is a duplicate key, ignored;
- an operation is upserted with ``$setOnInsert`` (its first state), ``$min``/``$max`` (times) and
  ``$set`` of facts that never change (type, environment, integration, connection);
- its state moves only forward, by a second, conditional update: ``waiting`` < ``running`` <
  terminal (``success``, ``failed``, ``timeout``), and between two terminal states the later event
  wins. Events may arrive in any order; the result is the same.

The two updates of one event may run in either order (``ordered=False``): if the conditional one
runs first it matches nothing and the upsert inserts that same state, so either order converges.
"""

from __future__ import annotations

import asyncio
from typing import Any

from keyway_shared.logging import get_logger
from keyway_shared.store import Database
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from .entries import TERMINAL_STATES, Entry

__all__ = ["DUPLICATE_KEY", "STATE_RANK", "ActivityWriter", "operation_writes"]

DUPLICATE_KEY = 11000
STATE_RANK = {"waiting": 0, "running": 1, "success": 2, "failed": 2, "timeout": 2}

log = get_logger(__name__)


def operation_writes(entry: Entry) -> list[UpdateOne]:
    """The upsert that creates or touches the operation, and the one that moves its state forward."""
    facts: dict[str, Any] = {"type": entry.operation_type, "environment": entry.environment}
    for name in ("provider_config_key", "provider", "connection_id"):
        value = getattr(entry, name)
        if value is not None:
            facts[name] = value
    state = entry.state or "waiting"
    state_fields: dict[str, Any] = {"state": state, "state_rank": STATE_RANK[state], "state_at": entry.at}
    if state in TERMINAL_STATES:
        state_fields["ended_at"] = entry.at
    if state == "failed" and entry.error is not None:
        state_fields["error"] = entry.error
    upsert = UpdateOne(
        {"_id": entry.operation_id},
        {
            "$set": facts,
            "$setOnInsert": state_fields,
            "$min": {"created_at": entry.at, "started_at": entry.at},
            "$max": {"updated_at": entry.at, "expires_at": entry.expires_at},
        },
        upsert=True,
    )
    if entry.state is None:
        return [upsert]
    rank = STATE_RANK[state]
    advance: dict[str, Any] = {"$set": state_fields}
    if "error" not in state_fields:
        advance["$unset"] = {"error": ""}  # a later success supersedes an earlier failure
    forward = UpdateOne(
        {
            "_id": entry.operation_id,
            "$or": [{"state_rank": {"$lt": rank}}, {"state_rank": rank, "state_at": {"$lt": entry.at}}],
        },
        advance,
    )
    return [upsert, forward]


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
            self._write_operations([op for entry in entries for op in operation_writes(entry)]),
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
            log.info("skipped activity messages already stored", duplicates=len(duplicates))

    async def _write_operations(self, ops: list[UpdateOne]) -> None:
        for _ in range(2):
            try:
                await self._operations.bulk_write(ops, ordered=False)
                return
            except BulkWriteError as exc:
                duplicates = _only_duplicates(exc)
                if duplicates is None:
                    raise
                # Two upserts of a new operation raced and one lost: the loser's update was not applied.
                # Run the losers again; the operation exists now, so they update it.
                ops = [ops[index] for index in duplicates]
        await self._operations.bulk_write(ops, ordered=False)
