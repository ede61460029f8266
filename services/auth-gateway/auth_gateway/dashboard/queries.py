"""Reads the pages need beyond the public API's shapes: connection lists with filters and health.

Credentials never leave the database here: every query projects them away. A connection's
credentials are only decrypted on its own page, when a person asks to reveal them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyway_shared.store import Database

__all__ = ["HEALTH_FILTERS", "ConnectionFilters", "ConnectionRow", "connection_counts", "list_connections"]

HEALTH_FILTERS = {
    "ok": "Healthy",
    "failing": "Refresh failing",
    "exhausted": "Refresh exhausted (must reconnect)",
}
_PROJECTION = {
    "id": 1,
    "connection_id": 1,
    "provider_config_key": 1,
    "provider": 1,
    "auth_mode": 1,
    "created_at": 1,
    "updated_at": 1,
    "credentials_expires_at": 1,
    "refresh_failed": 1,
    "refresh_exhausted": 1,
    "refresh_error": 1,
    "last_fetched_at": 1,
}


@dataclass(frozen=True, kw_only=True)
class ConnectionFilters:
    q: str = ""
    integration: str = ""
    auth_mode: str = ""
    health: str = ""


@dataclass(frozen=True, kw_only=True)
class ConnectionRow:
    id: int | None
    connection_id: str
    provider_config_key: str
    provider: str
    auth_mode: str
    created_at: datetime | None
    expires_at: datetime | None
    last_fetched_at: datetime | None
    refresh_failed: bool
    refresh_exhausted: bool
    refresh_error: dict[str, Any] | None

    @property
    def health(self) -> str:
        if self.refresh_exhausted:
            return "exhausted"
        return "failing" if self.refresh_failed else "ok"


def row_of(doc: dict[str, Any]) -> ConnectionRow:
    return ConnectionRow(
        id=doc.get("id"),
        connection_id=doc["connection_id"],
        provider_config_key=doc["provider_config_key"],
        provider=doc.get("provider", ""),
        auth_mode=doc.get("auth_mode", ""),
        created_at=doc.get("created_at"),
        expires_at=doc.get("credentials_expires_at"),
        last_fetched_at=doc.get("last_fetched_at"),
        refresh_failed=bool(doc.get("refresh_failed")),
        refresh_exhausted=bool(doc.get("refresh_exhausted")),
        refresh_error=doc.get("refresh_error"),
    )


async def list_connections(
    db: Database, environment: str, filters: ConnectionFilters, *, limit: int = 200
) -> list[ConnectionRow]:
    query: dict[str, Any] = {"environment": environment}
    if filters.integration:
        query["provider_config_key"] = filters.integration
    if filters.auth_mode:
        query["auth_mode"] = filters.auth_mode
    if filters.health == "exhausted":
        query["refresh_exhausted"] = True
    elif filters.health == "failing":
        query["refresh_failed"] = True
        query["refresh_exhausted"] = {"$ne": True}
    elif filters.health == "ok":
        query["refresh_failed"] = {"$ne": True}
        query["refresh_exhausted"] = {"$ne": True}
    cursor = db["connections"].find(query, _PROJECTION).sort("created_at", -1).limit(limit if not filters.q else 5000)
    rows = [row_of(doc) async for doc in cursor]
    if filters.q:
        # Substring search in memory over this environment's ids: no regex reaches the database.
        needle = filters.q.lower()
        rows = [r for r in rows if needle in r.connection_id.lower() or needle in r.provider_config_key.lower()]
    return rows[:limit]


async def connection_counts(db: Database, environment: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for doc in db["connections"].find({"environment": environment}, {"provider_config_key": 1}):
        counts[doc["provider_config_key"]] = counts.get(doc["provider_config_key"], 0) + 1
    return counts
