"""Opening MongoDB through PyMongo's async API (``AsyncMongoClient``, Motor's official successor)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

__all__ = ["Database", "open_client"]

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
