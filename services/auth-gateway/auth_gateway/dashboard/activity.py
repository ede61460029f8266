"""Reading the activity log (``activity_operations`` and ``activity_messages``, written by the
activity-log service) for the Activity pages: filters, free-text search, a stable cursor, and the
per-integration success/failure counts the chart draws.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = [
    "OPERATION_TYPES",
    "RANGES",
    "STATES",
    "ActivityFilters",
    "Series",
    "get_operation",
    "list_operations",
    "outcome_series",
]

STATES = ("waiting", "running", "success", "failed", "timeout")
OPERATION_TYPES = (
    "auth:create_connection",
    "auth:refresh_token",
    "webhook:outgoing",
    "proxy",
    "admin:update_connection",
    "admin:delete_connection",
    "admin:reveal_credentials",
    "admin:reveal_secret",
)
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "15d": timedelta(days=15)}
_TEXT_SCAN_LIMIT = 2000


@dataclass(frozen=True, kw_only=True)
class ActivityFilters:
    since: datetime | None = None
    until: datetime | None = None
    type: str = ""
    state: str = ""
    integration: str = ""
    connection: str = ""
    q: str = ""
    before: tuple[datetime, str] | None = None  # the cursor: strictly older than (time, id)


def parse_cursor(value: str) -> tuple[datetime, str] | None:
    when, _, op_id = value.partition("|")
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), op_id


def cursor_of(operation: dict[str, Any]) -> str:
    at: datetime = operation["created_at"]
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{at.isoformat()}|{operation['_id']}"


def _text_pattern(text: str) -> dict[str, str]:
    return {"$regex": re.escape(text), "$options": "i"}


async def _query(db: Database, environment: str, filters: ActivityFilters) -> dict[str, Any]:
    query: dict[str, Any] = {"environment": environment}
    created: dict[str, datetime] = {}
    if filters.since:
        created["$gte"] = filters.since
    if filters.until:
        created["$lte"] = filters.until
    if created:
        query["created_at"] = created
    for field, value in (
        ("type", filters.type),
        ("state", filters.state),
        ("provider_config_key", filters.integration),
        ("connection_id", filters.connection),
    ):
        if value:
            query[field] = value
    if filters.q:
        # Free text: the operations whose messages mention it, or whose names or error do.
        pattern = _text_pattern(filters.q)
        cursor = (
            db["activity_messages"]
            .find({"environment": environment, "message": pattern}, {"operation_id": 1})
            .limit(_TEXT_SCAN_LIMIT)
        )
        ids = list({doc["operation_id"] async for doc in cursor})
        query["$or"] = [
            {"_id": {"$in": ids}},
            {"connection_id": pattern},
            {"provider_config_key": pattern},
            {"error.description": pattern},
        ]
    return query


async def list_operations(
    db: Database, environment: str, filters: ActivityFilters, *, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor of the next (older) page, or None at the end."""
    query = await _query(db, environment, filters)
    if filters.before:
        at, op_id = filters.before
        older = {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": op_id}}]}
        query = {"$and": [query, older]}
    cursor = db["activity_operations"].find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit + 1)
    operations = [doc async for doc in cursor]
    more = len(operations) > limit
    operations = operations[:limit]
    return operations, (cursor_of(operations[-1]) if more and operations else None)


async def get_operation(db: Database, environment: str, operation_id: str) -> dict[str, Any] | None:
    operation = await db["activity_operations"].find_one({"_id": operation_id, "environment": environment})
    if operation is None:
        return None
    cursor = db["activity_messages"].find({"operation_id": operation_id}).sort([("created_at", 1), ("_id", 1)])
    operation["messages"] = [doc async for doc in cursor]
    return operation


@dataclass(frozen=True, kw_only=True)
class Series:
    """One integration's outcomes per time bucket, oldest bucket first."""

    integration: str
    succeeded: list[int]
    failed: list[int]

    @property
    def total_succeeded(self) -> int:
        return sum(self.succeeded)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)


async def outcome_series(
    db: Database, environment: str, filters: ActivityFilters, *, buckets: int = 24, cap: int = 20_000
) -> tuple[datetime, datetime, list[Series]]:
    """Successes and failures (failed or timed out) per integration over the filtered time range."""
    until = filters.until or utcnow()
    since = filters.since or until - RANGES["24h"]
    scoped = replace(filters, since=since, until=until, state="", q="", before=None)
    query = await _query(db, environment, scoped)
    query["state"] = {"$in": ["success", "failed", "timeout"]}
    if not filters.type:
        query["type"] = {"$not": {"$regex": "^admin:"}}  # a person's reveal or edit is no success of the integration
    width = max((until - since).total_seconds() / buckets, 1.0)
    series: dict[str, Series] = {}
    cursor = db["activity_operations"].find(query, {"provider_config_key": 1, "state": 1, "created_at": 1}).limit(cap)
    async for doc in cursor:
        key = doc.get("provider_config_key")
        if not key:
            continue
        at: datetime = doc["created_at"]
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        index = min(int((at - since).total_seconds() // width), buckets - 1)
        if index < 0:
            continue
        entry = series.setdefault(key, Series(integration=key, succeeded=[0] * buckets, failed=[0] * buckets))
        (entry.succeeded if doc["state"] == "success" else entry.failed)[index] += 1
    return since, until, [series[k] for k in sorted(series)]
