"""Opening MongoDB through PyMongo's async API (``AsyncMongoClient``, Motor's official successor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from ..events import utcnow

__all__ = ["Database", "db_now", "open_client"]

Database = AsyncDatabase[dict[str, Any]]


def open_client(url: str, *, app_name: str, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose datetimes come back timezone-aware (UTC), failing fast when the server is gone."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )


def db_now() -> datetime:
    """Now, in UTC, cut to the millisecond a BSON date keeps, so what we return is what a read gives back."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
