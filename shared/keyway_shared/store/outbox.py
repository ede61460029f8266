"""The transactional outbox: an event is written in the same transaction as the state it describes.

The gateway publishes each event right after its transaction commits and deletes the outbox row
once the broker confirmed. When the broker is down the row stays; a relay loop on every gateway
replica claims old rows with a lease (so two replicas rarely publish the same row; when they do,
consumers skip the duplicate by event id) and publishes them once the broker is back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from ..events import CloudEvent, encode_event, utcnow
from .client import Database

__all__ = ["OutboxRow", "OutboxStore"]


@dataclass(frozen=True, kw_only=True)
class OutboxRow:
    event_id: str
    routing_key: str
    body: bytes
    created_at: datetime
    # The message's AMQP headers (``CloudEvent.header_fields``): queues may be bound on them, so a
    # row published by the sweep must carry the same ones as one published at once. A row written
    # before rows kept them has only its id and type.
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def amqp_headers(self) -> dict[str, Any]:
        return self.headers or {"ce_id": self.event_id, "ce_type": self.routing_key}


def _row(event: CloudEvent[Any], now: datetime) -> OutboxRow:
    return OutboxRow(
        event_id=event.id,
        routing_key=event.type,
        body=encode_event(event),
        created_at=now,
        headers=event.header_fields(),
    )


def _document(row: OutboxRow) -> dict[str, Any]:
    # No lease: the sweep may take it once it is old enough, should its writer never publish it.
    return {
        "_id": row.event_id,
        "routing_key": row.routing_key,
        "body": row.body,
        "headers": row.headers,
        "created_at": row.created_at,
        "lease_until": row.created_at,
    }


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self._col = db["outbox"]

    async def add(self, event: CloudEvent[Any], *, session: AsyncClientSession | None = None) -> OutboxRow:
        row = _row(event, utcnow())
        await self._col.insert_one(_document(row), session=session)
        return row

    async def add_many(
        self, events: list[CloudEvent[Any]], *, session: AsyncClientSession | None = None
    ) -> list[OutboxRow]:
        """:meth:`add` for several events in one round trip."""
        now = utcnow()
        rows = [_row(event, now) for event in events]
        if rows:
            await self._col.insert_many([_document(row) for row in rows], session=session)
        return rows

    async def delete(self, event_ids: list[str]) -> None:
        if event_ids:
            await self._col.delete_many({"_id": {"$in": event_ids}})

    async def claim_stale(self, *, older_than: timedelta, lease: timedelta, limit: int, owner: str) -> list[OutboxRow]:
        """Rows nobody published, in the order they were written: read candidates, take those still
        free with one conditional update (each claim marked with its own token), read back what this
        claim took. Three round trips for the lot instead of one per row."""
        now = utcnow()
        candidates = [
            doc["_id"]
            async for doc in self._col.find(
                {"created_at": {"$lte": now - older_than}, "lease_until": {"$lte": now}}, {"_id": 1}
            )
            .sort("created_at", 1)
            .limit(limit)
        ]
        if not candidates:
            return []
        claim = uuid.uuid4().hex
        taken = await self._col.update_many(
            {"_id": {"$in": candidates}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + lease, "owner": owner, "claim": claim}},
        )
        if taken.modified_count == 0:
            return []
        docs = self._col.find({"_id": {"$in": candidates}, "claim": claim}).sort("created_at", 1)
        return [
            OutboxRow(
                event_id=doc["_id"],
                routing_key=doc["routing_key"],
                body=bytes(doc["body"]),
                created_at=doc["created_at"],
                headers=dict(doc.get("headers") or {}),
            )
            async for doc in docs
        ]

    async def release(self, event_ids: list[str]) -> None:
        """Give claimed rows back at once (their publish failed), instead of waiting out the lease."""
        if event_ids:
            await self._col.update_many({"_id": {"$in": event_ids}}, {"$set": {"lease_until": utcnow()}})

    async def count(self) -> int:
        return await self._col.count_documents({})
